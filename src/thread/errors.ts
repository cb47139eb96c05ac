/*
 * Errors across comlink. comlink flattens a thrown error to name, message
 * and stack; this replaces its "throw" transfer handler so that a
 * DmaBufError arrives as a DmaBufError with code, errno and syscall intact.
 * Both sides call installErrorTransfer() before any call.
 */
import { transferHandlers, type TransferHandler } from "comlink";
import { DmaBufError, type ErrnoCode } from "../errno.js";

interface WireError {
  name: string;
  message: string;
  stack?: string;
  code?: string;
  syscall?: string;
}

let installed = false;

export function installErrorTransfer(): void {
  if (installed) return;
  installed = true;
  const original = transferHandlers.get("throw") as TransferHandler<{ value: unknown }, unknown>;
  transferHandlers.set("throw", {
    canHandle: original.canHandle,
    serialize(thrown: { value: unknown }) {
      const e = thrown.value;
      if (!(e instanceof Error)) return original.serialize(thrown);
      const wire: WireError = { name: e.name, message: e.message, stack: e.stack };
      if (e instanceof DmaBufError) {
        wire.code = e.code;
        wire.syscall = e.syscall;
      }
      return [{ dmabufError: wire }, []];
    },
    deserialize(serialized: unknown) {
      const wire = (serialized as { dmabufError?: WireError }).dmabufError;
      if (wire === undefined) return original.deserialize(serialized);
      let error: Error;
      if (wire.code !== undefined && wire.syscall !== undefined) {
        // The message already carries "CODE: syscall: "; keep it as sent.
        error = new DmaBufError(wire.code as ErrnoCode, wire.syscall, "");
        error.message = wire.message;
      } else {
        error = new Error(wire.message);
        error.name = wire.name;
      }
      error.stack = wire.stack;
      throw error;
    },
  } as TransferHandler<{ value: unknown }, unknown>);
}
