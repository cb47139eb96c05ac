/*
 * A race report (check.ts) as lines of text, for the commands that print it
 * (contend, demo): a verdict line, then each race with both sides, then the
 * unbracketed mmap accesses. Returns lines; prints nothing.
 */
import type { AccessSide, Race, SanitizeReport } from "./check.js";

/** How one side is named: who, doing what, under which fence, on which bytes. */
export function describeSide(s: AccessSide): string {
  const fence = s.fence === null ? "no fence" : `fence ${s.fence.context}:${s.fence.seqno}`;
  return `${s.agent}: ${s.call} (${s.write ? "write" : "read"}, ${fence}) of ${s.buffer.name} ` +
    `[${s.range.offset}, ${s.range.offset + s.range.length}) at ${(s.startNs / 1e6).toFixed(3)} ms`;
}

/** The one-line verdict. */
export function raceVerdict(r: SanitizeReport): string {
  const races = r.raceCount === 0 ? "no race" : `${r.truncated ? "at least " : ""}${r.raceCount} race${r.raceCount === 1 ? "" : "s"}`;
  const unbracketed = r.unbracketedCount === 0 ? "" : `, ${r.unbracketedCount} mmap access${r.unbracketedCount === 1 ? "" : "es"} outside SYNC START/END`;
  const incomplete = r.incomplete ? ` (INCOMPLETE: a log was full; ${r.unsure} accesses unchecked)` : "";
  return `sanitizer: ${races}${unbracketed} in ${r.accesses} accesses by ${r.agents} threads and devices${incomplete}`;
}

/** The verdict, then at most `limit` races and `limit` unbracketed accesses. */
export function renderRaceReport(r: SanitizeReport, limit = 10): string[] {
  const lines = [raceVerdict(r)];
  r.races.slice(0, limit).forEach((race: Race, i) => {
    lines.push(`  race ${i + 1}: ${describeSide(race.a)}`, `          vs ${describeSide(race.b)}`);
  });
  if (r.raceCount > limit) lines.push(`  ... and ${r.raceCount - limit} more`);
  for (const s of r.unbracketed.slice(0, limit)) lines.push(`  unbracketed: ${describeSide(s)}`);
  if (r.unbracketedCount > limit) lines.push(`  ... and ${r.unbracketedCount - limit} more unbracketed`);
  return lines;
}
