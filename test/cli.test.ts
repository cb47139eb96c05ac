/*
 * The command line, run as a real subprocess on the built bundle
 * (npm test builds it first).
 */
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
});
