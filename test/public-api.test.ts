/*
 * The public API is what the README says it is: every name the README
 * imports from "dmabuf-lab" or "dmabuf-lab/kernel", and every class-like
 * name it writes in inline code, is exported by that entry point, both by
 * the sources the types come from (src/index.ts, src/kernel/index.ts, read
 * with the TypeScript compiler, so type-only exports count) and by the
 * built bundles users run (dist/lib, built by npm test). A refactor that
 * drops or renames one fails here with the name.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const root = new URL("..", import.meta.url).pathname;
const readme = readFileSync(join(root, "README.md"), "utf8");

const entries = {
  "dmabuf-lab": { source: "src/index.ts", bundle: "dist/lib/index.js" },
  "dmabuf-lab/kernel": { source: "src/kernel/index.ts", bundle: "dist/lib/kernel.js" },
} as const;
type Entry = keyof typeof entries;

/** Names in the README's import statements, per entry point ("type X" counts as X). */
function importedNames(): Map<Entry, Set<string>> {
  const names = new Map<Entry, Set<string>>(Object.keys(entries).map((e) => [e as Entry, new Set<string>()]));
  for (const m of readme.matchAll(/import\s*(?:type\s*)?\{([^}]*)\}\s*from\s*"(dmabuf-lab(?:\/kernel)?)"/g)) {
    for (const n of m[1].split(",")) {
      const name = n.trim().replace(/^type\s+/, "").split(/\s+as\s+/)[0];
      if (name) names.get(m[2] as Entry)!.add(name);
    }
  }
  return names;
}

/** Class-like names (capitalized, followed by `.`, `(`, `<`, or alone) in the README's inline code. */
function inlineNames(): Set<string> {
  const names = new Set<string>();
  for (const [, span] of readme.matchAll(/`([^`\n]+)`/g)) {
    for (const [, id] of span.matchAll(/(?<![\w.$-])([A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*)(?=[.(<]|$|[ ,)])/g)) names.add(id);
  }
  return names;
}

/** The platform's names and words the README writes in code that are not the package's. */
const notOurs = new Set(["WebAssembly", "Uint8Array", "Atomics", "Worker", "Async"]);

const program = ts.createProgram(Object.values(entries).map((e) => join(root, e.source)), {
  module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022,
  noEmit: true, skipLibCheck: true, types: ["node"],
});
const checker = program.getTypeChecker();

/** Every name an entry point's source exports, and whether it is a value (a bundle must export those too). */
function sourceExports(entry: Entry): Map<string, boolean> {
  const file = program.getSourceFile(join(root, entries[entry].source))!;
  return new Map(checker.getExportsOfModule(checker.getSymbolAtLocation(file)!).map((s) => {
    const target = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
    return [s.name, (target.flags & ts.SymbolFlags.Value) !== 0];
  }));
}

describe("the README's names are the package's exports", () => {
  const imported = importedNames();

  it("the README imports from both entry points", () => {
    expect(imported.get("dmabuf-lab")!.size).toBeGreaterThan(20);
    expect(imported.get("dmabuf-lab/kernel")!.size + inlineNames().size).toBeGreaterThan(10);
  });

  for (const entry of Object.keys(entries) as Entry[]) {
    it(`every name the README imports from "${entry}" is exported by its source and its bundle`, async () => {
      const source = sourceExports(entry);
      const bundle = new Set(Object.keys(await import(join(root, entries[entry].bundle))));
      for (const name of imported.get(entry)!) {
        expect(source.has(name), `${name} in ${entries[entry].source}`).toBe(true);
        if (source.get(name)) expect(bundle.has(name), `${name} in ${entries[entry].bundle}`).toBe(true);
      }
    });
  }

  it("every class-like name in the README's inline code is exported by the package", () => {
    const exported = new Set([...sourceExports("dmabuf-lab").keys(), ...sourceExports("dmabuf-lab/kernel").keys()]);
    const missing = [...inlineNames()].filter((n) => !notOurs.has(n) && !exported.has(n));
    expect(missing).toEqual([]);
  });
}, 120_000);
