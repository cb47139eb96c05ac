/*
 * References in flight: what a share() token carries to another thread.
 *
 * THE SHARING RULE. `x.share()` takes a new reference on x's object and
 * parks it in a small *flight record* in the sync heap; the token it returns
 * ({kind, offset, flight, nonce, ...}, plain numbers and strings) names the
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
 * (EINVAL); the flight record: a live sync-heap block carrying
 * FLIGHT_MAGIC, this kind and this object (EINVAL otherwise); the nonce
 * still parked in FLIGHT_NONCE (EBADF: the token was imported or dropped
 * already, so a structured-clone copy of it cannot be imported twice). The
 * claim is one compareExchange of FLIGHT_NONCE (nonce -> 0): of two threads
 * importing copies of one token, exactly one wins. A freed record's words
 * are overwritten (the allocator's links, then whatever is allocated
 * there), and a record reused for another flight carries another nonce, so
 * a stale token does not match it (the nonce is 32 random bits; the arena's
 * record generations will replace it).
 */
import { DmaBufError, hex } from "../errno.js";
import type { Sync } from "./sync.js";

/** "FLGT": the record is a flight record. */
export const FLIGHT_MAGIC = 0x464c4754;
export const FLIGHT_TAG = 0;
/** The token's nonce while the reference is parked; 0 once claimed. */
export const FLIGHT_NONCE = 4;
export const FLIGHT_KIND = 8;
/** The object's record offset. */
export const FLIGHT_OBJECT = 12;
export const FLIGHT_SIZE = 16;

export const shareKinds = ["dma-buf", "fence", "sync_file", "sw_sync", "resv", "queue"] as const;
export type ShareKind = (typeof shareKinds)[number];

/** What share() returns: structured-cloneable; import it once, or dropToken() it. */
export interface ShareToken<K extends ShareKind = ShareKind> {
  readonly kind: K;
  /** The object's record in the arena. */
  readonly offset: number;
  /** The flight record holding the reference. */
  readonly flight: number;
  readonly nonce: number;
  /** dma-buf: the sender's file flags (access mode, O_NONBLOCK), copied to the importer's file. */
  readonly flags?: number;
  /** sync_file: its name. */
  readonly name?: string;
}

function randomNonce(): number {
  const word = new Uint32Array(1);
  do crypto.getRandomValues(word); while (word[0] === 0);
  return word[0];
}

/**
 * Parks a reference for a token. `take()` takes the reference (after the
 * record is allocated, so ENOMEM takes nothing); it may throw (a closed
 * object), and then nothing is left behind.
 */
export function sendFlight<K extends ShareKind>(
  sync: Sync, kind: K, offset: number, take: () => void, extra: { flags?: number; name?: string } = {},
): ShareToken<K> {
  const flight = sync.allocRecord(FLIGHT_SIZE, "share");
  try {
    take();
  } catch (e) {
    sync.freeRecord(flight);
    throw e;
  }
  const nonce = randomNonce();
  const u32 = sync.u32;
  u32[(flight + FLIGHT_KIND) >>> 2] = shareKinds.indexOf(kind);
  u32[(flight + FLIGHT_OBJECT) >>> 2] = offset;
  u32[(flight + FLIGHT_TAG) >>> 2] = FLIGHT_MAGIC;
  // Publish: the token reaches another thread through postMessage, which
  // orders these plain stores before anything the receiver does; the
  // seq-cst store keeps the claim word itself atomic.
  Atomics.store(u32, (flight + FLIGHT_NONCE) >>> 2, nonce);
  return { kind, offset, flight, nonce, ...extra };
}

const isU32 = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;

/** The token's shape and flight record, without claiming it. */
function checkFlight(sync: Sync, token: unknown, kind: ShareKind, syscall: string): asserts token is ShareToken {
  const t = token as Partial<ShareToken> | null;
  if (t === null || typeof t !== "object" || !isU32(t.offset) || !isU32(t.flight) || !isU32(t.nonce) || t.nonce === 0) {
    throw new DmaBufError("EINVAL", syscall, `${describe(token)} is not a share() token`);
  }
  if (t.kind !== kind) throw new DmaBufError("EINVAL", syscall, `token kind '${String(t.kind)}' is not '${kind}'`);
  const u32 = sync.u32;
  const f = t.flight;
  if (sync.arena.syncHeap.orderAt(f) < 0 || u32[(f + FLIGHT_TAG) >>> 2] !== FLIGHT_MAGIC ||
      u32[(f + FLIGHT_KIND) >>> 2] !== shareKinds.indexOf(kind) || u32[(f + FLIGHT_OBJECT) >>> 2] !== t.offset) {
    // The record is gone (imported or dropped, then freed or reused).
    throw new DmaBufError("EBADF", syscall, `the ${kind} token of ${hex(t.offset)} (flight ${hex(f)}) was already imported or dropped`);
  }
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
export function receiveFlight<T>(sync: Sync, token: unknown, kind: ShareKind, syscall: string, adopt: (token: ShareToken) => T): T {
  checkFlight(sync, token, kind, syscall);
  const at = (token.flight + FLIGHT_NONCE) >>> 2;
  // The claim: exactly one importer (or dropper) of all the copies wins.
  if (Atomics.compareExchange(sync.u32, at, token.nonce, 0) !== token.nonce) {
    throw new DmaBufError("EBADF", syscall, `the ${kind} token of ${hex(token.offset)} was already imported or dropped`);
  }
  let object: T;
  try {
    object = adopt(token);
  } catch (e) {
    Atomics.store(sync.u32, at, token.nonce); // unclaim: the reference is still parked
    throw e;
  }
  sync.u32[(token.flight + FLIGHT_TAG) >>> 2] = 0;
  sync.freeRecord(token.flight);
  return object;
}
