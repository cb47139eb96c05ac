/*
 * The import rules of dmabuf-lab (dependency-cruiser; test/architecture.test.ts runs them).
 *
 * Floors, bottom to top: a module may import from its own floor or a lower one, never a
 * higher one, and no import circle anywhere. Type-only imports count (tsPreCompilationDeps):
 * a type import that runs up a floor is the start of a circle. docs/ARCHITECTURE.md draws
 * the same floors; change both together.
 */
const floors = [
  ["base", ["^src/(errno|args|host_fs)[.]ts$", "^src/types/", "^src/report([.]ts$|/)"]],
  ["memory", ["^src/memory/"]],
  ["engine", ["^src/engine/", "^src/trace/", "^src/sanitize/"]],
  ["sync", ["^src/sync/"]],
  ["dmabuf", ["^src/dmabuf/"]],
  ["core lab", ["^src/lab[.]ts$"]],
  ["thread", ["^src/thread/", "^src/browser_workers[.]ts$"]],
  ["device records", ["^src/devices/(?!(device|watchdog|storage)[.]ts$)"]],
  ["uapi", ["^src/uapi/", "^src/io_uring/"]],
  ["devices", ["^src/devices/(device|watchdog|storage)[.]ts$"]],
  ["api", ["^src/api/"]],
  ["applications", ["^src/demo/", "^src/contend/"]],
  ["package", ["^src/index[.]ts$", "^src/kernel/"]],
  ["commands", ["^src/cli/", "^bench/", "^workers/"]],
];

const upward = floors.slice(0, -1).map(([name, paths], i) => ({
  name: `floor-${name.replace(/ /g, "-")}`,
  comment: `the ${name} floor imports only from itself and the floors below it`,
  severity: "error",
  from: { path: paths },
  to: { path: floors.slice(i + 1).flatMap(([, p]) => p) },
}));

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      comment: "an import circle (type-only imports included) ties its modules into one floor",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "every-module-has-a-floor",
      comment: "a new top-level module or folder gets a floor in .dependency-cruiser.cjs",
      severity: "error",
      from: { path: "^(src|bench|workers)/", pathNot: floors.flatMap(([, p]) => p) },
      to: {},
    },
    ...upward,
  ],
  options: {
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^(node_modules|build|dist)/" },
  },
};
