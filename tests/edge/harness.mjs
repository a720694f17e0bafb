// Runs the built edge worker (edge-worker/build, from worker-build) in workerd
// on 127.0.0.1 only, configured like wrangler.toml: through miniflare for the
// tests (`startEdge`), or as a bare `workerd serve` process where its startup
// is being timed (`spawnWorkerd`).
import { spawn } from "node:child_process";
import { copyFileSync, linkSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import workerd from "workerd";

// The package is CommonJS marked as transpiled ESM: its path is `.default`.
const workerdBinary = workerd.default ?? workerd;

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

/**
 * Spawns `workerd serve` on `port` with the built worker, or with `script`
 * (an ES module's source) instead, and returns at once: `{ url, dispose }`.
 * Nothing sits between the caller and the runtime (miniflare adds its own
 * proxy worker and a control channel, about 80 ms of its startup), so the
 * time from here to a first answer is the runtime's and the worker's own.
 * Outbound fetches may reach loopback (the writer).
 */
export function spawnWorkerd({ bindings = {}, port, script } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "tidemark-workerd-"));
  const text = (value) => JSON.stringify(String(value));
  // workerd embeds files from the config's own directory only.
  const place = (file) => {
    try {
      linkSync(join(build, file), join(dir, file));
    } catch {
      copyFileSync(join(build, file), join(dir, file));
    }
  };
  let modules;
  if (script) {
    writeFileSync(join(dir, "main.js"), script);
    modules = `(name = "main.js", esModule = embed "main.js")`;
  } else {
    place("index.js");
    place("index_bg.wasm");
    modules = `(name = "index.js", esModule = embed "index.js"), (name = "index_bg.wasm", wasm = embed "index_bg.wasm")`;
  }
  const vars = Object.entries(bindings).map(([name, value]) => `(name = ${text(name)}, text = ${text(value)})`);
  writeFileSync(
    join(dir, "config.capnp"),
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "edge", worker = .edge),
    (name = "internet", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "edge")],
);
const edge :Workerd.Worker = (
  modules = [${modules}],
  compatibilityDate = ${text(compatibilityDate())},
  globalOutbound = "internet",
  bindings = [${vars.join(", ")}],
);
`,
  );
  const child = spawn(workerdBinary, ["serve", join(dir, "config.capnp")], { stdio: ["ignore", "inherit", "inherit"] });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  return {
    url: `http://127.0.0.1:${port}`,
    alive: () => child.exitCode === null && child.signalCode === null,
    async dispose() {
      if (child.exitCode === null && child.signalCode === null) child.kill();
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `fetch`, retried while `server` (from `spawnWorkerd`) is starting. */
export async function fetchWhenUp(server, path, init, timeoutMs = 10_000) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await fetch(server.url + path, init);
    } catch (err) {
      const starting = err.cause?.code === "ECONNREFUSED" && server.alive();
      if (!starting || performance.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 1));
    }
  }
}
