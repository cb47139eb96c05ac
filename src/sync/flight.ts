/*
 * References in flight: what a share() token carries to another thread.
 *
 * THE SHARING RULE. `x.share()` takes a new reference on x's object and
 * parks it in a small *flight record* in the sync heap; the token it returns
 * ({kind, offset, flight, generation, ...}, plain numbers and strings) names the
 * object and that record. Exactly one `X.import(lab, token)` (or
 * `lab.import(token)`), in any thread, adopts the parked reference as that
 * thread's object and frees the record, so the sender may close its own
 * object as soon as share() returns: no reply is needed, as SCM_RIGHTS holds
 * a file while its fd is in flight. A token that will never be imported must
 * be dropped with `lab.dropToken(token)` (any thread), which releases the
 * reference. A token that is neither imported nor dropped keeps its object
 * alive for the life of the lab: structured clone makes copies, so no
 * thread can see that "the" token was garbage collected (a
 * FinalizationRegistry in the sender sees only the sender's copy), and a
 * lost token is a leaked reference, like an fd in a message never received.
 *
 * Checks on import (the token came from another thread): the token's shape
 * (EINVAL); the flight record: a live record of type `flight` of the
 * token's generation (src/memory/record.ts) naming this kind and object
 * (EBADF otherwise: the token was imported or dropped, its record freed,
 * perhaps reused). The claim is one compareExchange of FLIGHT_CLAIM
 * (0 -> 1): of two threads importing copies of one token, exactly one wins;
 * the winner frees the record, which changes its generation, so every
 * other copy is refused from then on.
 */
import { DmaBufError, hex } from "../errno.js";
import { RecordType } from "../memory/record.js";
import type { SyncRecords } from "./records.js";

/** 0 while the reference is parked; 1 once an import (or drop) claimed it. */
export const FLIGHT_CLAIM = 0;
export const FLIGHT_KIND = 4;
/** The object's record offset. */
export const FLIGHT_OBJECT = 8;
export const FLIGHT_SIZE = 16;

export const shareKinds = ["dma-buf", "fence", "sync_file", "sw_sync", "resv", "queue", "device"] as const;
export type ShareKind = (typeof shareKinds)[number];

/** What share() returns: structured-cloneable; import it once, or dropToken() it. */
export interface ShareToken<K extends ShareKind = ShareKind> {
  /** What it shares: "dma-buf", "fence", "sync_file", "sw_sync", "resv", "queue" or "device". */
  readonly kind: K;
  /** The object's record in the arena. */
  readonly offset: number;
  /** The flight record holding the reference, and that record's generation. */
  readonly flight: number;
  /** The flight record's generation (src/memory/record.ts): a copy of a spent token is refused. */
  readonly generation: number;
  /** dma-buf: the sender's file flags (access mode, O_NONBLOCK), copied to the importer's file. */
  readonly flags?: number;
  /** sync_file: its name. */
  readonly name?: string;
}

/**
 * Parks a reference for a token. `take()` takes the reference (after the
 * record is allocated, so ENOMEM takes nothing); it may throw (a closed
 * object), and then nothing is left behind.
 */
export function sendFlight<K extends ShareKind>(
  sync: SyncRecords, kind: K, offset: number, take: () => void, extra: { flags?: number; name?: string } = {},
): ShareToken<K> {
  const flight = sync.allocRecord(RecordType.flight, FLIGHT_SIZE, "share");
  try {
    take();
  } catch (e) {
    sync.freeRecord(flight, RecordType.flight);
    throw e;
  }
  const u32 = sync.u32;
  u32[(flight + FLIGHT_KIND) >>> 2] = shareKinds.indexOf(kind);
  u32[(flight + FLIGHT_OBJECT) >>> 2] = offset;
  // Publish: the token reaches another thread through postMessage, which
  // orders these stores before anything the receiver does; the claim word
  // is only ever changed atomically.
  Atomics.store(u32, (flight + FLIGHT_CLAIM) >>> 2, 0);
  const generation = sync.arena.records.check(flight, RecordType.flight, "share");
  return { kind, offset, flight, generation, ...extra };
}

const isU32 = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;

/** The token's shape and flight record, without claiming it. */
function checkFlight(sync: SyncRecords, token: unknown, kind: ShareKind, syscall: string): asserts token is ShareToken {
  const t = token as Partial<ShareToken> | null;
  if (t === null || typeof t !== "object" || !isU32(t.offset) || !isU32(t.flight) || !isU32(t.generation)) {
    throw new DmaBufError("EINVAL", syscall, `${describe(token)} is not a share() token`);
  }
  if (t.kind !== kind) throw new DmaBufError("EINVAL", syscall, `token kind '${String(t.kind)}' is not '${kind}'`);
  const u32 = sync.u32;
  const f = t.flight as number;
  const generation = t.generation as number;
  const spent = (): never => {
    throw new DmaBufError("EBADF", syscall, `the ${kind} token of ${hex(t.offset as number)} (flight ${hex(f)}) was already imported or dropped`);
  };
  try {
    sync.arena.records.check(f, RecordType.flight, syscall, "EBADF", generation);
  } catch {
    spent(); // the record is gone (imported or dropped, then freed or reused)
  }
  if (u32[(f + FLIGHT_KIND) >>> 2] !== shareKinds.indexOf(kind) || u32[(f + FLIGHT_OBJECT) >>> 2] !== t.offset) spent();
}

function describe(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/**
 * Imports a token: checks it, claims its reference, and lets `adopt()` turn
 * that reference into this thread's object. If adopt() throws, the claim is
 * undone (the token stays importable, nothing changed).
 */
export function receiveFlight<T>(sync: SyncRecords, token: unknown, kind: ShareKind, syscall: string, adopt: (token: ShareToken) => T): T {
  checkFlight(sync, token, kind, syscall);
  const at = (token.flight + FLIGHT_CLAIM) >>> 2;
  // The claim: exactly one importer (or dropper) of all the copies wins.
  if (Atomics.compareExchange(sync.u32, at, 0, 1) !== 0) {
    throw new DmaBufError("EBADF", syscall, `the ${kind} token of ${hex(token.offset)} was already imported or dropped`);
  }
  let object: T;
  try {
    object = adopt(token);
  } catch (e) {
    Atomics.store(sync.u32, at, 0); // unclaim: the reference is still parked
    throw e;
  }
  sync.freeRecord(token.flight, RecordType.flight);
  return object;
}
