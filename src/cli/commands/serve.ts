/*
 * `dmabuf-lab serve [--port N] [--host H] [--no-isolation]`: a static HTTP
 * server (node:http) for the browser side of the package, on localhost.
 *
 *   /                 web/           the index page (and the demo, later)
 *   /dist/browser/    dist/browser/  the browser bundle, its workers, engine.wasm
 *   /test/            build/test-browser/  the browser tests' pages, once built
 *
 * Every response carries Cross-Origin-Opener-Policy: same-origin,
 * Cross-Origin-Embedder-Policy: require-corp and Cross-Origin-Resource-Policy:
 * same-origin, which make the pages cross-origin isolated (shared memory
 * across workers); --no-isolation leaves the first two out, to see the error a
 * page gets without them. Types by extension (.wasm application/wasm, so
 * that compileStreaming works; .js and .mjs text/javascript). Only GET and
 * HEAD; a path outside the mounts (.. included) is 404; no caching.
 * Browsers isolate only secure contexts, which http://localhost and
 * http://127.0.0.1 are. The URL goes to stdout; SIGINT (or SIGTERM) stops
 * the server and the command returns 0.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { readFile, stat } from "node:fs/promises";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "../command.js";
import { integer, parseOptions } from "../options.js";
import { packageUrl } from "../../engine/artifacts.js";

export interface ServeOptions {
  /** 0 picks a free port. Default 8080. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Send COOP and COEP (default true). */
  isolation?: boolean;
}

export interface WebServer {
  /** http://HOST:PORT/ */
  readonly url: string;
  close(): Promise<void>;
}

/** URL prefix -> directory of the package. */
export const mounts: ReadonlyArray<readonly [prefix: string, dir: string]> = [
  ["/dist/browser/", "dist/browser"],
  ["/test/", "build/test-browser"],
  ["/", "web"],
];

const types: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".txt": "text/plain; charset=utf-8",
};

export const ISOLATION_HEADERS = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
} as const;

/** The file a request path names, or undefined when it is outside every mount. */
function resolvePath(urlPath: string): string | undefined {
  let path: string;
  try {
    path = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  const mount = mounts.find(([prefix]) => path.startsWith(prefix));
  if (mount === undefined || path.includes("\0")) return undefined;
  const dir = fileURLToPath(packageUrl(mount[1]));
  const file = normalize(join(dir, path.slice(mount[0].length)));
  if (file !== dir && !file.startsWith(dir + sep)) return undefined;
  return path.endsWith("/") ? join(file, "index.html") : file;
}

async function respond(req: IncomingMessage, res: ServerResponse, isolation: boolean): Promise<void> {
  res.setHeader("Cross-Origin-Resource-Policy", "same-origin");
  res.setHeader("Cache-Control", "no-store");
  res.setHeader("X-Content-Type-Options", "nosniff");
  if (isolation) for (const [name, value] of Object.entries(ISOLATION_HEADERS)) res.setHeader(name, value);
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { Allow: "GET, HEAD" }).end();
    return;
  }
  const file = resolvePath(new URL(req.url ?? "/", "http://localhost").pathname);
  const info = file === undefined ? undefined : await stat(file).catch(() => undefined);
  if (file === undefined || info === undefined || !info.isFile()) {
    res.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" }).end(`not found: ${req.url}\n`);
    return;
  }
  const body = await readFile(file);
  res.writeHead(200, {
    "Content-Type": types[extname(file)] ?? "application/octet-stream",
    "Content-Length": body.byteLength,
  });
  res.end(req.method === "HEAD" ? undefined : body);
}

/** Starts the server; resolves once it listens. */
export async function startServer(options: ServeOptions = {}): Promise<WebServer> {
  const { port = 8080, host = "127.0.0.1", isolation = true } = options;
  const server: Server = createServer((req, res) => {
    respond(req, res, isolation).catch((e: unknown) => {
      if (!res.headersSent) res.writeHead(500, { "Content-Type": "text/plain; charset=utf-8" });
      res.end(`${(e as Error).message}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const bound = typeof address === "object" && address !== null ? address.port : port;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${bound}/`,
    close: () => new Promise<void>((resolve, reject) => {
      server.close((e) => (e ? reject(e) : resolve()));
      server.closeAllConnections();
    }),
  };
}

const loopback = (host: string) => host === "localhost" || host === "::1" || host.startsWith("127.");

export const serve: Command = {
  name: "serve",
  summary: "serve the browser pages (web/, dist/browser/) on localhost with the cross-origin isolation headers",
  usage: `usage: dmabuf-lab serve [--port N] [--host H] [--no-isolation]

Serves web/ at /, the browser bundle dist/browser/ at /dist/browser/ and the
built browser test pages at /test/, with Cross-Origin-Opener-Policy:
same-origin and Cross-Origin-Embedder-Policy: require-corp, which a page needs
to share memory with workers. Prints the URL; Ctrl-C stops it.
\`npm run demo:web\` builds first, then serves.

  --port N         the port (default 8080; 0 picks a free one)
  --host H         the address to listen on (default 127.0.0.1). Browsers
                   isolate only secure contexts: http://localhost, or HTTPS
  --no-isolation   leave out COOP and COEP (to see the error a page gets)
`,
  async run(argv, io) {
    const values = parseOptions(argv, { port: { type: "string" }, host: { type: "string" }, "no-isolation": { type: "boolean" } });
    const port = integer("port", values.port as string | undefined, 0, 65535) ?? 8080;
    const host = (values.host as string | undefined) ?? "127.0.0.1";
    const isolation = !values["no-isolation"];
    const bundle = fileURLToPath(packageUrl("dist/browser/index.js"));
    if (!(await stat(bundle).catch(() => undefined))) {
      io.stderr("dmabuf-lab serve: the browser bundle is not built; run `npm run build` (npm run demo:web does)\n");
    }
    let server: WebServer;
    try {
      server = await startServer({ port, host, isolation });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      io.stderr(`dmabuf-lab serve: cannot listen on ${host}:${port}: ${code === "EADDRINUSE" ? "the port is in use (--port 0 picks a free one)" : (e as Error).message}\n`);
      return 1;
    }
    io.stdout(`${server.url}\n`);
    io.stderr(`serve: web/ at ${server.url}, dist/browser/ at ${server.url}dist/browser/, ` +
      `${isolation ? "cross-origin isolated" : "WITHOUT the isolation headers"}; Ctrl-C stops\n`);
    if (!loopback(host)) io.stderr(`serve: browsers isolate only secure contexts: open it as http://localhost (a tunnel) or behind HTTPS\n`);
    await new Promise<void>((resolve) => {
      const stop = () => {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        resolve();
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    });
    await server.close();
    io.stderr("serve: stopped\n");
    return 0;
  },
};
