// comlink ships its Node adapter without a package export or types.
declare module "comlink/dist/esm/node-adapter.mjs" {
  import type { Endpoint } from "comlink";
  interface NodeEndpoint {
    postMessage(message: any, transfer?: readonly any[]): void; // eslint-disable-line @typescript-eslint/no-explicit-any
    on(type: "message", listener: (value: any) => void): unknown;
    off(type: "message", listener: (value: any) => void): unknown;
    start?: () => void;
  }
  export default function nodeEndpoint(nep: NodeEndpoint): Endpoint;
}
