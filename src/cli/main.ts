/*
 * The dmabuf-lab command line: `dmabuf-lab [COMMAND [SUBCOMMAND]] [OPTIONS]`.
 * With no command it runs the tour. Results go to stdout, progress to
 * stderr; exit code 0 on success, 1 when a check or an operation failed, 2
 * on a usage error (one line naming what was wrong, the usage line, and
 * "see --help"; nothing has run). Every message starts with one prefix, the
 * command's full name ("dmabuf-lab bench copy: "). At start-up the AUTO
 * table saved by `bench calibrate --write` (calibration_file.ts) becomes
 * the default of every lab the command creates.
 */
import { readFileSync } from "node:fs";
import { usageLine, type Command, type CommandIo } from "./command.js";
import { UsageError } from "./options.js";
import { tour } from "./commands/tour.js";
import { bench } from "./commands/bench.js";
import { serve } from "./commands/serve.js";
import { contend } from "./commands/contend.js";
import { demo } from "./commands/demo.js";
import { report } from "./commands/report.js";
import { DmaBufError } from "../errno.js";
import { packageUrl } from "../engine/artifacts.js";
import { setDefaultCalibration } from "../engine/calibration.js";
import { loadCalibration } from "./calibration_file.js";

const commands: Command[] = [tour, demo, contend, bench, report, serve];

function help(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    "usage: dmabuf-lab [COMMAND] [OPTIONS]",
    "",
    "A user-space laboratory of the Linux dma-buf subsystem.",
    "",
    "commands:",
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "options:",
    "  --help, -h     this help; `dmabuf-lab COMMAND --help` describes a command",
    "  --version, -V  the version",
    "",
    "With no command, the tour runs.",
  ].join("\n") + "\n";
}

function version(): string {
  return (JSON.parse(readFileSync(packageUrl("package.json"), "utf8")) as { version: string }).version;
}

/** A usage error: what was wrong, the usage line, where the help is. */
function usageError(io: CommandIo, name: string, message: string, usage: string): number {
  io.stderr(`${name}: ${message}\n${usage}\nsee '${name} --help'\n`);
  return 2;
}

/** A DmaBufError as the CLI prints it: the errno code and the message, without the internal operation name. */
function describeError(e: DmaBufError): string {
  const prefix = `${e.code}: ${e.syscall}: `;
  return `${e.code}: ${e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message}`;
}

export async function main(argv: string[], io: CommandIo): Promise<number> {
  const [first] = argv;
  if (first === "--help" || first === "-h" || first === "help") {
    io.stdout(help());
    return 0;
  }
  if (first === "--version" || first === "-V") {
    io.stdout(`${version()}\n`);
    return 0;
  }
  let command: Command | undefined = tour;
  let rest = argv;
  if (first !== undefined && !first.startsWith("-")) {
    command = commands.find((c) => c.name === first);
    rest = argv.slice(1);
    if (command === undefined) return usageError(io, "dmabuf-lab", `unknown command '${first}'`, "usage: dmabuf-lab [COMMAND] [OPTIONS]");
  } else if (first !== undefined && !["--json"].includes(first)) {
    return usageError(io, "dmabuf-lab", `unknown option '${first}'`, "usage: dmabuf-lab [COMMAND] [OPTIONS]");
  }
  let name = `dmabuf-lab ${command.name}`;
  while (command.subcommands) {
    const [sub, ...more] = rest;
    const choices = command.subcommands.map((c) => c.name.split(" ").pop()!);
    // A command that runs by itself too (demo) takes its own options unless a subcommand is named.
    if (command.run !== undefined && !choices.includes(sub)) break;
    if (sub === undefined || sub === "--help" || sub === "-h") {
      if (sub === undefined) return usageError(io, name, `which one? (${choices.join(", ")})`, usageLine(command));
      io.stdout(command.usage);
      return 0;
    }
    const found: Command | undefined = command.subcommands.find((c) => c.name.split(" ").pop() === sub);
    if (found === undefined) return usageError(io, name, `unknown subcommand '${sub}' (expected ${choices.join(", ")})`, usageLine(command));
    command = found;
    rest = more;
    name = `dmabuf-lab ${command.name}`;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    io.stdout(command.usage);
    return 0;
  }
  try {
    return await command.run!(rest, io);
  } catch (e) {
    if (e instanceof UsageError) return usageError(io, name, e.message, usageLine(command));
    if (e instanceof DmaBufError) {
      io.stderr(`${name}: ${describeError(e)}\n`);
      return 1;
    }
    throw e;
  }
}

const io: CommandIo = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
};
try {
  const saved = loadCalibration();
  if (saved !== undefined) setDefaultCalibration(saved);
} catch (e) {
  io.stderr(`dmabuf-lab: ignoring the saved calibration: ${e instanceof DmaBufError ? describeError(e) : (e as Error).message}\n`);
}
process.exitCode = await main(process.argv.slice(2), io);
