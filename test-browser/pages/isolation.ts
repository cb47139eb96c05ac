/*
 * What Lab.create() does in this page, isolated or not: the browser tests
 * open it from a server that sends the isolation headers and from one that
 * does not. Reports IsolationResults.
 */
import { Lab } from "../../src/index.js";
import { outcomeAsync, report, type IsolationResults } from "../protocol.js";

report(async (): Promise<IsolationResults> => ({
  crossOriginIsolated: crossOriginIsolated,
  labCreate: await outcomeAsync(async () => {
    const lab = await Lab.create({ memoryBytes: 16 << 20 });
    lab.close();
    return "created";
  }),
}));
