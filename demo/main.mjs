// `cargo xtask demo` starts this once the writer is up: the edge in workerd
// and the app server (demo/stack.mjs). Prints `edge <url>` and `app <url>`
// when both answer, then runs until SIGINT or SIGTERM.
//
//   node demo/main.mjs --writer URL --token TOKEN --dataset DIR
//       [--namespace demo] [--collection packages] [--edge-port 8787] [--app-port 8080]
import { parseArgs } from "node:util";
import { startStack } from "./stack.mjs";

const { values: args } = parseArgs({
  options: {
    writer: { type: "string" },
    token: { type: "string" },
    dataset: { type: "string" },
    namespace: { type: "string", default: "demo" },
    collection: { type: "string", default: "packages" },
    "edge-port": { type: "string", default: "8787" },
    "app-port": { type: "string", default: "8080" },
    "max-staleness-ms": { type: "string", default: "1000" },
  },
});
for (const required of ["writer", "token", "dataset"]) {
  if (!args[required]) {
    console.error(`demo/main.mjs: --${required} is required`);
    process.exit(2);
  }
}

const stack = await startStack({
  writer: args.writer,
  token: args.token,
  dataset: args.dataset,
  namespace: args.namespace,
  collection: args.collection,
  edgePort: Number(args["edge-port"]),
  appPort: Number(args["app-port"]),
  maxStalenessMs: args["max-staleness-ms"],
});
console.log(`edge ${stack.edge}`);
console.log(`app ${stack.app}`);

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    await stack.stop();
    process.exit(0);
  });
}
