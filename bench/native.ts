/*
 * The native C peer: builds bench/native/memcpy.c with the system's C
 * compiler (cc -O2 -pthread, or $CC) into build/native/memcpy when the
 * binary is missing or older than its source, runs it as a subprocess with a
 * spec of cases on stdin and returns its samples. The "threads" case runs
 * memcpy on several threads at once (each its own src and dst) and samples
 * the aggregate: ns per copy over all threads.
 *
 * Contract: never throws for an absent or broken toolchain. No compiler, a
 * failed build or a missing source file (an installed package ships no
 * bench/) give { reason } from buildNative(); a crashed or inconsistent run
 * gives { status: "failed", reason } from runNative(). The benchmark then
 * reports the native rows as skipped. Progress lines of the subprocess go to
 * onProgress; nothing is printed here.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { artifactUrl, packageUrl } from "../src/engine/artifacts.js";

/** How the native C peer fared in a run. */
export interface NativeStatus {
  status: "ran" | "skipped";
  compiler: string | null;
  reason: string | null;
}

export interface NativeBudget {
  timeMs: number;
  minSamples: number;
  warmupMs: number;
  maxSamples: number;
}

/** One spec line; see the comment at the top of memcpy.c. */
export type NativeCase =
  | { kind: "contig"; bytes: number; srcOff: number; dstOff: number; batch: number }
  | { kind: "scatter" | "gather"; poolPages: number; pages: number; seed: number; batch: number }
  | { kind: "tiny"; window: number; segments: number; maxLen: number; seed: number; batch: number }
  /** batch: copies per thread in one timed round. */
  | { kind: "threads"; bytes: number; threads: number; batch: number };

export interface NativeSamples {
  /** FNV-1a of the random layout as C drew it (0 for contiguous cases). */
  hash: number;
  batch: number;
  /** Nanoseconds per operation, one per timed batch. */
  samples: number[];
}

export type NativeBuild = { binary: string; compiler: string } | { reason: string };

export type NativeRun =
  | { status: "ran"; results: Map<string, NativeSamples> }
  | { status: "failed"; reason: string };

export function nativeCaseKey(c: NativeCase): string {
  switch (c.kind) {
    case "contig": return `contig ${c.bytes} ${c.srcOff} ${c.dstOff} ${c.batch}`;
    case "scatter":
    case "gather": return `${c.kind} ${c.poolPages} ${c.pages} ${c.seed} ${c.batch}`;
    case "tiny": return `tiny ${c.window} ${c.segments} ${c.maxLen} ${c.seed} ${c.batch}`;
    case "threads": return `threads ${c.bytes} ${c.threads} ${c.batch}`;
  }
}

interface Exec { code: number | null; stdout: string; stderr: string; error?: Error }

function run(file: string, args: string[], timeoutMs: number): Promise<Exec> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      const code = error ? (typeof (error as { code?: unknown }).code === "number" ? (error as { code: number }).code : null) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr), error: error ?? undefined });
    });
  });
}

/** The first C compiler that answers --version: $CC, cc, gcc, clang. */
async function findCompiler(): Promise<{ cc: string; version: string } | undefined> {
  const candidates = [process.env.CC, "cc", "gcc", "clang"].filter((c): c is string => !!c);
  for (const cc of candidates) {
    const r = await run(cc, ["--version"], 10_000);
    if (r.code === 0) return { cc, version: r.stdout.split("\n")[0].trim() };
  }
  return undefined;
}

/** Builds the binary if needed; returns its path and the compiler, or why not. */
export async function buildNative(): Promise<NativeBuild> {
  const source = fileURLToPath(packageUrl("bench/native/memcpy.c"));
  const binary = fileURLToPath(artifactUrl("native/memcpy"));
  if (!existsSync(source)) return { reason: `the C source ${source} is not present (bench/ is not part of an installed package)` };
  const compiler = await findCompiler();
  const fresh = existsSync(binary) && statSync(binary).mtimeMs >= statSync(source).mtimeMs;
  if (!compiler) {
    return fresh
      ? { binary, compiler: `${binary}, built earlier (no C compiler found now)` }
      : { reason: "no C compiler found ($CC, cc, gcc, clang)" };
  }
  const label = `${compiler.cc} -O2 -pthread (${compiler.version})`;
  if (fresh) return { binary, compiler: label };
  mkdirSync(dirname(binary), { recursive: true });
  const r = await run(compiler.cc, ["-O2", "-pthread", "-o", binary, source], 120_000);
  if (r.code !== 0) {
    const why = (r.stderr.trim() || r.error?.message || "unknown error").split("\n").slice(0, 6).join(" | ");
    return { reason: `building ${source} with ${compiler.cc} failed: ${why}` };
  }
  if (!existsSync(binary)) return { reason: `building ${source} with ${compiler.cc} produced no binary` };
  return { binary, compiler: label };
}

/**
 * Runs the built peer over some cases (the benchmark runs one case at a time,
 * next to the JavaScript side of the same case, so that a drift of the host
 * between cases does not skew the ratios).
 */
export function runNative(
  binary: string,
  cases: NativeCase[],
  budget: NativeBudget,
  onProgress: (line: string) => void = () => {},
): Promise<NativeRun> {
  const spec = [
    `budget ${budget.timeMs} ${budget.minSamples} ${budget.warmupMs} ${budget.maxSamples}`,
    ...cases.map(nativeCaseKey),
  ].join("\n") + "\n";

  return new Promise((resolve) => {
    const child = spawn(binary, [], { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    let pending = "";
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        err += line + "\n";
        if (line.trim()) onProgress(line.trim());
      }
    });
    child.on("error", (e) => resolve({ status: "failed", reason: `running ${binary} failed: ${e.message}` }));
    child.on("close", (code, signal) => {
      if (code !== 0) {
        resolve({ status: "failed", reason: `${binary} exited with ${signal ?? code}: ${err.trim().split("\n").slice(-3).join(" | ")}` });
        return;
      }
      const wrong = err.split("\n").filter((l) => l.includes("copied wrong bytes"));
      if (wrong.length) {
        resolve({ status: "failed", reason: `the native peer failed its own check: ${wrong.join(" | ")}` });
        return;
      }
      try {
        const parsed = JSON.parse(Buffer.concat(out).toString()) as {
          results: { case: string; hash: number; batch: number; samples: number[] }[];
        };
        const results = new Map<string, NativeSamples>();
        for (const r of parsed.results) results.set(r.case, { hash: r.hash >>> 0, batch: r.batch, samples: r.samples });
        resolve({ status: "ran", results });
      } catch (e) {
        resolve({ status: "failed", reason: `could not parse the native peer's output: ${(e as Error).message}` });
      }
    });
    child.stdin.on("error", () => {});
    child.stdin.end(spec);
  });
}

/** The peer as a benchmark reports it: built (and its binary) or skipped, with why (disabled: --no-native). */
export async function nativePeer(enabled: boolean): Promise<{ native: NativeStatus; binary?: string }> {
  if (!enabled) return { native: { status: "skipped", compiler: null, reason: "disabled (--no-native)" } };
  const built = await buildNative();
  return "reason" in built
    ? { native: { status: "skipped", compiler: null, reason: built.reason } }
    : { native: { status: "ran", compiler: built.compiler, reason: null }, binary: built.binary };
}
