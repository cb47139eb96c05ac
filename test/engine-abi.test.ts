/*
 * The engine's ABI: the numbers of assembly/abi.ts and src/engine/abi.ts
 * agree, the compiled module exports exactly the functions Engine calls and
 * imports only env.memory, and the TypeScript line split matches its
 * definition.
 */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import * as abi from "../src/engine/abi.js";
import { ENGINE_EXPORTS } from "../src/engine/abi.js";
import { lineSplit } from "../src/engine/lines.js";
import { loadEngineModule } from "../src/engine/module.js";
import { MUTEX_ACQUISITIONS, MUTEX_OWNER, MUTEX_STATE } from "../src/memory/mutex.js";

const assemblyAbi = readFileSync(new URL("../assembly/abi.ts", import.meta.url), "utf8");

/**
 * The constants of assembly/abi.ts: `export const NAME: type = value;` where
 * value is an integer literal or an arithmetic expression over integer
 * literals and earlier constants.
 */
function parseAssemblyConstants(source: string): Map<string, number> {
  const constants = new Map<string, number>();
  const integerTypes = ["i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64", "isize", "usize"];
  const declaration = /^export\s+const\s+([A-Za-z_]\w*)\s*:\s*(\w+)\s*=\s*([^;]+);/gm;
  for (const [, name, type, expression] of source.matchAll(declaration)) {
    const substituted = expression.replace(/\b[A-Za-z_]\w*\b/g, (id) => {
      const value = constants.get(id);
      if (value === undefined) throw new Error(`${name}: unknown identifier ${id} in '${expression}'`);
      return String(value);
    });
    if (!/^[\d\sa-fA-FxX_+\-*/()<>|&~]+$/.test(substituted)) {
      throw new Error(`${name}: cannot evaluate '${expression}'`);
    }
    const value = Number(new Function(`return (${substituted.replace(/_/g, "")});`)());
    if (!Number.isSafeInteger(value)) throw new Error(`${name}: '${expression}' is not an integer`);
    if (!integerTypes.includes(type)) throw new Error(`${name}: type ${type} is not an integer type`);
    constants.set(name, value);
  }
  return constants;
}

describe("assembly/abi.ts and src/engine/abi.ts", () => {
  const asm = parseAssemblyConstants(assemblyAbi);
  const ts = new Map(Object.entries(abi).filter((e): e is [string, number] => typeof e[1] === "number"));

  it("the parser finds every declaration of assembly/abi.ts", () => {
    const declared = assemblyAbi.match(/^export\s+const\s/gm) ?? [];
    expect(asm.size).toBe(declared.length);
    expect(asm.size).toBeGreaterThan(20);
  });

  it("every assembly constant has the same value in TypeScript", () => {
    const mismatches = [...asm].filter(([name, value]) => ts.get(name) !== value)
      .map(([name, value]) => `${name}: assembly ${value}, TypeScript ${ts.get(name)}`);
    expect(mismatches).toEqual([]);
  });

  it("the engine's view of a Mutex (MUTEX_*) is src/memory/mutex.ts's layout", () => {
    expect([abi.MUTEX_STATE, abi.MUTEX_ACQUISITIONS, abi.MUTEX_OWNER]).toEqual([MUTEX_STATE, MUTEX_ACQUISITIONS, MUTEX_OWNER]);
  });

  it("TypeScript has no numeric constant that assembly lacks", () => {
    expect([...ts.keys()].filter((name) => !asm.has(name))).toEqual([]);
  });
});

describe("the compiled module (build/engine.wasm)", () => {
  it("exports exactly the functions Engine calls, and nothing else but memory", async () => {
    const module = await loadEngineModule();
    const exports = WebAssembly.Module.exports(module);
    const functions = exports.filter((e) => e.kind === "function").map((e) => e.name).sort();
    expect(functions).toEqual([...ENGINE_EXPORTS].sort());
    const others = exports.filter((e) => e.kind !== "function");
    for (const e of others) expect(e, "an unexpected export").toEqual({ name: "memory", kind: "memory" });
  });

  it("imports only env.memory", async () => {
    const module = await loadEngineModule();
    expect(WebAssembly.Module.imports(module)).toEqual([{ module: "env", name: "memory", kind: "memory" }]);
  });
});

describe("lineSplit (src/engine/lines.ts)", () => {
  /**
   * By definition, byte by byte: a byte is in the body when its whole
   * 64-byte line lies inside the range; the partial-line bytes of the line
   * the range starts in, when it does not start on a boundary, are the head;
   * the remaining ones the tail.
   */
  function bruteForce(offset: number, len: number): { head: number; lines: number; tail: number } {
    const end = offset + len;
    let head = 0;
    let body = 0;
    let tail = 0;
    for (let b = offset; b < end; b++) {
      const line = Math.floor(b / 64);
      if (line * 64 >= offset && line * 64 + 64 <= end) body++;
      else if (offset % 64 !== 0 && line === Math.floor(offset / 64)) head++;
      else tail++;
    }
    if (body % 64 !== 0) throw new Error(`(${offset}, ${len}): the body is not whole lines`);
    return { head, lines: body / 64, tail };
  }

  it("matches the byte-by-byte definition for offsets 0..130 and lengths 0..200", () => {
    const wrong: string[] = [];
    for (let offset = 0; offset <= 130; offset++) {
      for (let len = 0; len <= 200; len++) {
        const got = lineSplit(offset, len);
        const want = bruteForce(offset, len);
        if (got.head !== want.head || got.lines !== want.lines || got.tail !== want.tail) {
          wrong.push(`(${offset}, ${len}): got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
        }
      }
    }
    expect(wrong.slice(0, 10)).toEqual([]);
  });

  it("matches it at large arena offsets too", () => {
    for (const offset of [0x0fffffc0, 0x0fffffc1, 0x0fffffff, 0xfffffe00, 0xfffffe3f]) {
      for (const len of [0, 1, 63, 64, 65, 127, 128, 130, 200, 511]) {
        expect(lineSplit(offset, len), `(${offset}, ${len})`).toEqual(bruteForce(offset, len));
      }
    }
  });
});
