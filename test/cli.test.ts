/*
 * The command line, run as a real subprocess on the built bundle
 * (npm test builds it first).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli as run } from "./helpers/cli.js";

describe("dmabuf-lab", () => {
  it("runs the tour with no arguments: every copy verified, progress on stderr only", async () => {
    const { code, stdout, stderr } = await run([]);
    expect(code).toBe(0);
    for (const s of ["bulk", "simd", "words", "bytes", "reference", "auto"]) expect(stdout).toMatch(new RegExp(`^${s}\\s+[\\d.]+\\s+yes$`, "m"));
    expect(stdout).toContain("matches");
    expect(stdout).not.toMatch(/^tour: /m);
    expect(stderr).toContain("tour: creating the lab");
  });

  it("tour --json prints one parsable object with verified copies", async () => {
    const { code, stdout } = await run(["tour", "--json"]);
    expect(code).toBe(0);
    const result = JSON.parse(stdout);
    // Every strategy copied and verified; the speed is reported, not judged (a number, whatever its value).
    expect(result.copies.map((c: { strategy: string }) => c.strategy)).toEqual(["bulk", "simd", "words", "bytes", "reference", "auto"]);
    for (const c of result.copies) {
      expect(c.verified).toBe(true);
      expect(c.gbps).toEqual(expect.any(Number));
    }
    expect(result.worker.matches).toBe(true);
    expect(result.dmabuf.verified).toBe(true);
    expect(result.pages.freeBytes).toBe(result.pages.totalBytes);
  });

  it("--help lists the commands; a command's --help prints its usage", async () => {
    const top = await run(["--help"]);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/^usage: dmabuf-lab/);
    expect(top.stdout).toContain("tour");
    const sub = await run(["tour", "--help"]);
    expect(sub.code).toBe(0);
    expect(sub.stdout).toContain("--json");
  });

  it("an unknown command or option is a usage error (exit 2) on stderr", async () => {
    const unknown = await run(["frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
    const badOption = await run(["tour", "--no-such-option"]);
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toContain("--no-such-option");
  });

  it("--version prints the package's version", async () => {
    const { code, stdout } = await run(["--version"]);
    expect(code).toBe(0);
    expect(stdout.trim()).toBe(JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version);
  });

  it("bench NAME --help prints that benchmark's help only", async () => {
    const { code, stdout } = await run(["bench", "copy", "--help"]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^usage: dmabuf-lab bench copy /);
    expect(stdout).not.toContain("bench fence");
    expect(stdout).toContain("--chart FILE");
  });

  it("a bad flag prints one message, the usage line and 'see --help' (exit 2), with one prefix", async () => {
    const bad = await run(["bench", "copy", "--frob"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr.split("\n")[0]).toBe("dmabuf-lab bench copy: unknown option '--frob'");
    expect(bad.stderr).toContain("see 'dmabuf-lab bench copy --help'");
    expect(bad.stderr).not.toContain("--regime R"); // the full help is not repeated
    const top = await run(["--frob"]);
    expect(top.code).toBe(2);
    expect(top.stderr).toMatch(/^dmabuf-lab: unknown option '--frob'/);
  });

  it.each([
    [["bench", "copy", "--seed", "-5"], "--seed -5 is out of range (expected 0..4294967295)"],
    [["bench", "copy", "--seed", "99999999999999999999"], "--seed 99999999999999999999 is out of range"],
    [["contend", "--writers", "-1"], "--writers -1 is out of range (expected 0..64)"],
    [["contend", "--size", "-4K"], "--size -4K is out of range"],
    [["demo", "--frames", "1e99"], "--frames '1e99' is not a whole number"],
  ])("%j is a range message, exit 2, before any work", async (argv, message) => {
    const { code, stderr } = await run(argv);
    expect(code).toBe(2);
    expect(stderr.split("\n")[0]).toContain(message);
    expect(stderr).not.toMatch(/ambiguous|\[\s*\d+ s\]/); // no Node parser text, no progress: nothing ran
  });

  it("contend checks the lab's size limit before any thread starts", async () => {
    const { code, stderr } = await run(["contend", "--buffers", "256", "--size", "64M"]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/^dmabuf-lab contend: 256 buffers of 67108864 bytes .* use fewer or smaller buffers/);
    expect(stderr).not.toContain("starting");
  });

  it("no help text names internal identifiers or issue numbers", async () => {
    const texts = await Promise.all([["--help"], ["bench", "--help"], ...["copy", "fence", "rw", "devices", "calibrate", "trace"]
      .map((b) => ["bench", b, "--help"]), ["contend", "--help"], ["demo", "--help"], ["tour", "--help"], ["report", "--help"],
    ["serve", "--help"]].map((a) => run(a)));
    for (const t of texts) {
      expect(t.code).toBe(0);
      expect(t.stdout).not.toMatch(/\bissue\b|_pipeline|src\/engine/);
    }
  });

  it("--out and --chart FILE.html of a benchmark, then report draws two saved results side by side", async () => {
    const dir = mkdtempSync(join(os.tmpdir(), "dmabuf-lab-report-"));
    try {
      const result = join(dir, "devices.json");
      const bench = await run(["bench", "devices", "--quick", "--no-native", "--out", result, "--chart", join(dir, "devices.svg")]);
      expect(bench.code).toBe(0);
      expect(JSON.parse(readFileSync(result, "utf8")).benchmark).toBe("devices");
      const svg = readFileSync(join(dir, "devices.svg"), "utf8");
      expect(svg).toMatch(/^<svg /);
      expect(svg).toContain("submit-to-complete latency");
      const page = join(dir, "report.html");
      const rep = await run(["report", result, result, "-o", page]);
      expect(rep.code).toBe(0);
      const html = readFileSync(page, "utf8");
      expect(html).toContain("grid-template-columns: repeat(2, max-content)");
      expect(html.match(/<svg /g)?.length).toBe(4); // two charts of each result
      expect(html.match(/dmabuf-lab bench devices --quick/g)?.length).toBe(2); // both tables
      const bad = await run(["report", join(dir, "devices.svg")]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain("is not JSON");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
