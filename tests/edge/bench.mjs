// `cargo xtask bench edge [--json FILE]`: the edge worker in workerd next to
// the real writer, on loopback. Prints its inputs and figures; with --json
// writes {visible_p50_ms, visible_p99_ms, cold_first_search_ms, memory_mb_20k}.
//
// - visible: a write to the writer, which pushes its signed invalidation to
//   the edge's webhook (`--webhook .../v1/invalidate`); reads at the edge
//   until the write shows; milliseconds from the write's start, over WRITES
//   writes. The edge's staleness bound is an hour, so only the push counts.
// - cold_first_search: from spawning a bare `workerd serve` with the worker
//   (a new process, so a new isolate that compiles the wasm) to its first
//   answered search on a 10k-record shard of the shared dataset, which it
//   bootstraps from the writer's snapshot; the median of COLD_STARTS. The
//   same for a worker that answers "ok" shows the runtime's own share.
// - memory_20k: the worker's wasm linear memory after loading the 20k set
//   (f32), from the worker's own /v1/edge/memory, once the writer's
//   background seals have settled.
import { readFileSync, writeFileSync } from "node:fs";
import { fetchWhenUp, freePort, spawnWorkerd, startEdge } from "./harness.mjs";
import { call, startWriter } from "./writer.mjs";

const DATA = process.env.TIDEMARK_DATA ?? new URL("../../../shared/data/debian-minilm-20k", import.meta.url).pathname;
const DIM = 384;
const WRITES = Number(process.env.TIDEMARK_BENCH_WRITES ?? 500);
const COLD_STARTS = 7;
const jsonOut = process.argv.includes("--json") ? process.argv[process.argv.indexOf("--json") + 1] : null;

function rows(file, count) {
  const buf = readFileSync(file);
  const all = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  return Array.from({ length: count }, (_, i) => Array.from(all.subarray(i * DIM, (i + 1) * DIM)));
}

const median = (values) => pct([...values].sort((a, b) => a - b), 50);
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

async function load(writer, token, collection, vectors) {
  const path = `/v1/ns/bench/collections/${collection}`;
  const made = await call(writer.url, "PUT", path, { token, body: { dimension: DIM, metric: "cosine", shards: 1 } });
  if (made.status !== 201) throw new Error(`create ${collection}: ${JSON.stringify(made.body)}`);
  for (let i = 0; i < vectors.length; i += 100) {
    const ops = vectors.slice(i, i + 100).map((vector, j) => ({ op: "put", id: `d${i + j}`, fields: { row: i + j }, vector }));
    const res = await call(writer.url, "POST", `${path}/records`, { token, body: { ops } });
    if (res.status !== 200) throw new Error(`load ${collection}: ${res.status} ${JSON.stringify(res.body)}`);
  }
  return path;
}

/** Waits until the writer's sealing thread has been idle for 3 s (its
 * maintenance looks for due seals every second); returns the seals done. */
async function sealsSettled(url, timeoutMs = 300_000) {
  const deadline = performance.now() + timeoutMs;
  let idleSince = null;
  for (;;) {
    const text = await (await fetch(`${url}/metrics`)).text();
    const counter = (name) => Number(text.match(new RegExp(`^${name} (\\d+)$`, "m"))?.[1] ?? NaN);
    const queued = counter("tidemark_seals_queued_total");
    const finished = counter("tidemark_seals_finished_total");
    if (!(finished > 0) || queued !== finished) idleSince = null;
    else if (idleSince === null) idleSince = performance.now();
    else if (performance.now() - idleSince >= 3000) return finished;
    if (performance.now() > deadline) throw new Error(`the writer's seals did not settle (queued ${queued}, finished ${finished})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const port = await freePort();
const writer = await startWriter({ webhooks: [`http://127.0.0.1:${port}/v1/invalidate`] });
const token = writer.token("bench", "read,write,admin");
const bindings = {
  WRITER_URL: writer.url,
  WRITER_PUBLIC_KEY: writer.keys.writer,
  TOKEN_PUBLIC_KEY: writer.keys.token_issuer,
  MAX_STALENESS_MS: "3600000", // only pushes make the edge look
  MEMORY_BUDGET_MB: "120",
};
const results = {};
const failures = {};
/** Runs one measurement; a failure is reported and the others still run. */
async function measure(name, body) {
  try {
    await body();
  } catch (err) {
    failures[name] = String(err.message ?? err).slice(0, 300);
    console.error(`bench edge: ${name} failed: ${failures[name]}`);
  }
}
let edge;
try {
  const base = rows(`${DATA}/base.f32`, 20000);
  const queries = rows(`${DATA}/queries.f32`, 7);
  console.log(`inputs: ${DATA}, dim ${DIM}, ${WRITES} writes, 10k and 20k records, 1 shard, cosine, f32`);

  await measure("visible", async () => {
    const small = await load(writer, token, "visible", base.slice(0, 100));
    edge = await startEdge({ bindings, port });
    await call(edge.url, "GET", `${small}/records/d0`, { token });
    const latencies = [];
    for (let i = 0; i < WRITES; i++) {
      const t0 = performance.now();
      const w = await call(writer.url, "POST", `${small}/records`, {
        token,
        body: { ops: [{ op: "patch", id: "d1", fields: { round: i } }] },
      });
      if (w.status !== 200) throw new Error(`write: ${w.status}`);
      for (;;) {
        const r = await call(edge.url, "GET", `${small}/records/d1`, { token });
        if (r.body.fields?.round === i) break;
      }
      latencies.push(performance.now() - t0);
    }
    latencies.sort((a, b) => a - b);
    results.visible_p50_ms = +pct(latencies, 50).toFixed(2);
    results.visible_p99_ms = +pct(latencies, 99).toFixed(2);
    console.log(`visible: p50 ${results.visible_p50_ms} ms, p99 ${results.visible_p99_ms} ms`);
    await edge.dispose();
    edge = null;
  });

  await measure("cold_first_search", async () => {
    const tenK = await load(writer, token, "tenk", base.slice(0, 10000));
    // A shard as it normally is: sealed at its head, the writer idle (a seal
    // running during the starts would compete for the two cores).
    const sealing = await call(writer.url, "POST", `${tenK}/shards/0/snapshot`, { token });
    if (sealing.status !== 202) throw new Error(`seal: ${sealing.status}`);
    await sealsSettled(writer.url);
    const snap = await call(writer.url, "GET", `${tenK}/shards/0/snapshot`, { token });
    if (snap.status !== 200) throw new Error(`snapshot: ${snap.status}`);
    console.log(
      `cold first search: the writer's sealed snapshot is at offset ${snap.headers.get("x-tidemark-offset")} of 10000` +
        ` (${(snap.body.length / 1e6).toFixed(1)} MB); the rest comes from the log`,
    );
    const search = { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" } };
    const cold = async (options, path, init) => {
      const t0 = performance.now();
      const server = spawnWorkerd({ port, ...options });
      try {
        const response = await fetchWhenUp(server, path, init);
        const body = await response.text();
        if (response.status !== 200) throw new Error(`cold ${path}: ${response.status} ${body.slice(0, 200)}`);
        return performance.now() - t0;
      } finally {
        await server.dispose();
      }
    };
    const runtime = [];
    const worker = [];
    for (let i = 0; i < COLD_STARTS; i++) {
      runtime.push(await cold({ script: "export default { fetch: () => new Response('ok') };" }, "/", {}));
      const body = JSON.stringify({ vector: queries[i % queries.length], k: 10 });
      worker.push(await cold({ bindings }, `${tenK}/search`, { ...search, body }));
    }
    results.cold_first_search_ms = +median(worker).toFixed(1);
    results.cold_runtime_only_ms = +median(runtime).toFixed(1);
    const list = (values) => values.map((v) => v.toFixed(0)).join(", ");
    console.log(`cold first search (10k): median ${results.cold_first_search_ms} ms of ${COLD_STARTS} starts (${list(worker)} ms)`);
    console.log(`  workerd with a worker answering "ok": median ${results.cold_runtime_only_ms} ms (${list(runtime)} ms)`);
  });

  await measure("memory_20k", async () => {
    const twentyK = await load(writer, token, "twentyk", base);
    // The writer reseals in the background as its index's policy asks; the
    // edge meets it settled: its latest sealed snapshot, then the log.
    const seals = await sealsSettled(writer.url);
    const snap = await call(writer.url, "GET", `${twentyK}/shards/0/snapshot`, { token });
    if (snap.status !== 200) throw new Error(`snapshot: ${snap.status}`);
    console.log(
      `memory: after ${seals} seals the writer's snapshot is at offset ${snap.headers.get("x-tidemark-offset")} of 20000; the rest comes from the log`,
    );
    edge = await startEdge({ bindings, port });
    const s = await call(edge.url, "POST", `${twentyK}/search`, { token, body: { vector: queries[0], k: 10 } });
    if (s.status !== 200) throw new Error(`20k search: ${JSON.stringify(s.body)}`);
    const mem = await call(edge.url, "GET", "/v1/edge/memory");
    results.memory_mb_20k = +(mem.body.wasm_memory_bytes / (1 << 20)).toFixed(1);
    results.replica_estimate_mb_20k = +(mem.body.replica_bytes / (1 << 20)).toFixed(1);
    console.log(`memory (20k): wasm ${results.memory_mb_20k} MB, replica estimate ${results.replica_estimate_mb_20k} MB`);
    await edge.dispose();
    edge = null;
  });
} finally {
  await edge?.dispose();
  await writer.stop();
}
if (Object.keys(failures).length) results.failures = failures;
console.log(JSON.stringify(results, null, 2));
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(results, null, 2) + "\n");
