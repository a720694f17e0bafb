// Runs the built edge worker (edge-worker/build, from worker-build) in workerd
// through miniflare, listening on 127.0.0.1 only, configured like wrangler.toml.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const build = join(repo, "edge-worker", "build");

/** The compatibility date of wrangler.toml, so tests and `wrangler dev` agree. */
function compatibilityDate() {
  const toml = readFileSync(join(repo, "wrangler.toml"), "utf8");
  const match = toml.match(/^compatibility_date\s*=\s*"([^"]+)"/m);
  if (!match) throw new Error("wrangler.toml has no compatibility_date");
  return match[1];
}

/** Starts the worker; resolves to `{ url, dispose }`. `bindings` become env vars. */
export async function startEdge({ bindings = {}, port = 0 } = {}) {
  const mf = new Miniflare({
    modules: true,
    scriptPath: join(build, "index.js"),
    modulesRoot: build,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
    compatibilityDate: compatibilityDate(),
    bindings,
    host: "127.0.0.1",
    port,
  });
  const url = await mf.ready;
  return { url, dispose: () => mf.dispose() };
}

/** A loopback port that was free a moment ago (for a webhook target known before the edge starts). */
export async function freePort() {
  const { createServer } = await import("node:net");
  const server = createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}
