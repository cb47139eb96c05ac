/*
 * The dmabuf-lab command line: `dmabuf-lab [COMMAND] [OPTIONS]`. With no
 * command it runs the tour. Results go to stdout, progress to stderr; exit
 * code 0 on success, 1 when a check or an operation failed, 2 on a usage error.
 */
import type { Command, CommandIo } from "./command.js";
import { tour } from "./commands/tour.js";
import { bench } from "./commands/bench.js";
import { serve } from "./commands/serve.js";
import { contend } from "./commands/contend.js";
import { demo } from "./commands/demo.js";
import { DmaBufError } from "../errno.js";

const commands: Command[] = [tour, bench, contend, serve, demo];

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
    "`dmabuf-lab COMMAND --help` describes a command. With no command, the tour runs.",
  ].join("\n") + "\n";
}

export async function main(argv: string[], io: CommandIo): Promise<number> {
  const [first, ...rest] = argv;
  if (first === "--help" || first === "-h" || first === "help") {
    io.stdout(help());
    return 0;
  }
  const command = first === undefined || first.startsWith("-") ? tour : commands.find((c) => c.name === first);
  if (command === undefined) {
    io.stderr(`dmabuf-lab: unknown command '${first}'\n\n${help()}`);
    return 2;
  }
  const args = first === undefined || first.startsWith("-") ? argv : rest;
  if (args.includes("--help") || args.includes("-h")) {
    io.stdout(command.usage);
    return 0;
  }
  try {
    return await command.run(args, io);
  } catch (e) {
    if ((e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      io.stderr(`dmabuf-lab ${command.name}: ${(e as Error).message}\n\n${command.usage}`);
      return 2;
    }
    if (e instanceof DmaBufError) {
      io.stderr(`dmabuf-lab ${command.name}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

const io: CommandIo = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
};
process.exitCode = await main(process.argv.slice(2), io);
