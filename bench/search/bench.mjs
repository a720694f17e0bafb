// The node half of `cargo xtask bench search`: one process, one thread,
// Tidemark's wasm module and the npm peers side by side on one dataset.
//
// Input: a JSON config (argv[2]) written by xtask. Output: a JSON file of
// rows, scan figures and checks, which xtask prints as a table and saves.
//
// Every figure is measured here, in this process. QPS is per CPU-second of
// the process (process.cpuUsage, user + system) over `rounds` passes of all
// queries after one warm-up pass; the median pass is reported. Recall@10 is
// against the dataset's exact ground truth.

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const require = createRequire(import.meta.url);
const K = 10;
const DIM = config.dim;
const modules = path.join(config.bench_dir, "node_modules");

const base = readF32(path.join(config.data, "base.f32"));
const queryBlock = readF32(path.join(config.data, "queries.f32"));
const truth = new Int32Array(fs.readFileSync(path.join(config.data, "gt.i32")).buffer.slice(0));
const N = base.length / DIM;
const Q = queryBlock.length / DIM;
const baseRows = Array.from({ length: N }, (_, i) => base.subarray(i * DIM, (i + 1) * DIM));
const queries = Array.from({ length: Q }, (_, i) => queryBlock.subarray(i * DIM, (i + 1) * DIM));
const native = JSON.parse(fs.readFileSync(config.native_results, "utf8"));

const rows = [];
const checks = [];
const notes = [];
const log = (s) => process.stderr.write(`bench: ${s}\n`);

function readF32(file) {
  const bytes = fs.readFileSync(file);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
}

function cpuSeconds() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function recallOf(results) {
  let hits = 0;
  results.forEach((found, q) => {
    const expected = truth.subarray(q * K, q * K + K);
    for (const row of Array.from(found).slice(0, K)) if (expected.includes(row)) hits++;
  });
  return hits / (K * results.length);
}

// One warm-up pass (its results are the ones scored), then `rounds` timed
// passes; the median pass's queries per CPU-second.
function measure(search, rounds = config.rounds, qs = queries) {
  const results = qs.map((q) => search(q));
  const qps = [];
  for (let r = 0; r < rounds; r++) {
    const start = cpuSeconds();
    for (const q of qs) search(q);
    qps.push(qs.length / (cpuSeconds() - start));
  }
  return { results, recall: recallOf(results), qps: median(qps) };
}

function row(engine, params, m, build_s, memory_mb) {
  const r = { engine, params, recall_at_10: round(m.recall, 4), qps_cpu: round(m.qps, 1), build_s: build_s == null ? null : round(build_s, 2), memory_mb: memory_mb == null ? null : round(memory_mb, 1) };
  rows.push(r);
  log(`${engine} ${params}: recall ${r.recall_at_10}, ${r.qps_cpu} q/s`);
}

const round = (x, d) => Math.round(x * 10 ** d) / 10 ** d;
const MB = 1024 * 1024;

function sameIds(results, expected, what) {
  let differing = 0;
  results.forEach((found, q) => {
    const a = Array.from(found);
    const b = expected[q];
    if (a.length !== b.length || a.some((x, i) => x !== b[i])) differing++;
  });
  checks.push({ check: `wasm ids == native ids (${what})`, ok: differing === 0, detail: `${differing} of ${results.length} queries differ` });
}

// ---------------------------------------------------------------- Tidemark
async function tidemark() {
  const tm = require(path.join(config.pkg, "tidemark_bench_search.js"));
  log(`tidemark kernels: ${tm.kernels()}`);
  const before = tm.wasm_memory_bytes();
  // Stream the segment's bytes in 1 MB chunks, as a replica reads a
  // snapshot section: wasm memory never holds the file and the segment at once.
  const file = fs.openSync(config.segment, "r");
  const total = fs.fstatSync(file).size;
  const chunk = Buffer.alloc(1 << 20);
  const loadStart = performance.now();
  const loader = new tm.Loader(total);
  for (let at = 0; at < total; ) {
    const n = fs.readSync(file, chunk, 0, chunk.length, at);
    loader.push(chunk.subarray(0, n));
    at += n;
  }
  fs.closeSync(file);
  const segment = loader.finish();
  const load_s = (performance.now() - loadStart) / 1000;
  const f32Memory = tm.wasm_memory_bytes() / MB;
  log(`tidemark: loaded ${total} bytes in ${load_s.toFixed(2)} s; wasm memory ${before / MB} → ${f32Memory} MB (segment ${(segment.memory_bytes() / MB).toFixed(1)} MB)`);
  checks.push({ check: "20k f32 index in wasm <= 45 MB", ok: f32Memory <= 45, detail: `${f32Memory.toFixed(1)} MB of wasm memory after loading (load ${load_s.toFixed(2)} s)` });

  const params = (ef, precision) => `ef=${ef} M0=${config.layer0_links} efC=${config.ef_construction} seed=${config.seed} ${precision}`;
  for (const ef of config.efs) {
    const m = measure((q) => segment.search(q, K, ef));
    sameIds(m.results, native.native[`f32/${ef}`].ids, `f32, ef ${ef}`);
    row("tidemark wasm simd128", params(ef, "f32"), m, native.build_s, f32Memory);
  }
  const exact = measure((q) => segment.scan(q, K), Math.max(1, config.rounds >> 1));
  sameIds(exact.results, native.exact, "exact scan");
  row("tidemark wasm simd128", "exact f32 scan", exact, native.build_s, f32Memory);

  // Scans in ns per vector, and the bound: a streaming SIMD read of the same
  // f32 bytes with one add per four floats.
  const scanNs = (fn, passes) => {
    fn();
    const times = [];
    for (let r = 0; r < passes; r++) {
      const start = cpuSeconds();
      fn();
      times.push(cpuSeconds() - start);
    }
    return median(times);
  };
  const scanQueries = queries.slice(0, 50);
  const f32Scan = scanNs(() => scanQueries.forEach((q) => segment.scan(q, K)), config.rounds) / (scanQueries.length * N) * 1e9;
  const bound = scanNs(() => { for (let i = 0; i < 20; i++) segment.stream_read(); }, config.rounds) / (20 * N) * 1e9;

  segment.set_precision("int8-rerank");
  const int8Memory = tm.wasm_memory_bytes() / MB;
  for (const ef of config.efs) {
    const m = measure((q) => segment.search(q, K, ef));
    sameIds(m.results, native.native[`int8-rerank/${ef}`].ids, `int8 + f32 rerank, ef ${ef}`);
    row("tidemark wasm simd128", params(ef, "int8+f32 rerank"), m, native.build_s, int8Memory);
  }
  const int8Scan = scanNs(() => scanQueries.forEach((q) => segment.scan(q, K)), config.rounds) / (scanQueries.length * N) * 1e9;
  const int8Exact = measure((q) => segment.scan(q, K), Math.max(1, config.rounds >> 1));
  row("tidemark wasm simd128", "int8 scan + f32 rerank of 40", int8Exact, native.build_s, int8Memory);
  segment.free();

  // A fresh segment of 1,000 records: exact top-10 per query.
  const fresh = new tm.Fresh(base.subarray(0, 1000 * DIM), DIM, 0);
  const freshTruth = queries.map((q) => bruteForce(q, 1000));
  const fm = measure((q) => fresh.search(q, K), config.rounds);
  const freshRecall = recallAgainst(fm.results, freshTruth);
  rows.push({ engine: "tidemark wasm simd128", params: "fresh segment, exact, 1000 × 384", recall_at_10: round(freshRecall, 4), qps_cpu: round(fm.qps, 1), build_s: null, memory_mb: null });
  const freshMs = 1000 / fm.qps;
  checks.push({ check: "1000 × 384 exact top-10 <= 0.03 ms", ok: freshMs <= 0.03, detail: `${freshMs.toFixed(4)} ms per query (recall vs brute force ${freshRecall})` });
  fresh.free();

  return { f32Scan, int8Scan, bound };
}

function bruteForce(q, n) {
  const scored = [];
  for (let i = 0; i < n; i++) {
    let d = 0;
    const v = baseRows[i];
    for (let j = 0; j < DIM; j++) d += q[j] * v[j];
    scored.push([d, i]);
  }
  scored.sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  return scored.slice(0, K).map((x) => x[1]);
}

function recallAgainst(results, expected) {
  let hits = 0;
  results.forEach((found, q) => {
    for (const r of Array.from(found)) if (expected[q].includes(r)) hits++;
  });
  return hits / (K * results.length);
}

// ------------------------------------------------------------------- peers
async function hnswlibWasm() {
  // Built for the browser: in node it needs a `window`, and its loader's
  // IndexedDB file-system setup is skipped by calling the factory directly.
  globalThis.window = globalThis;
  const dist = path.join(modules, "hnswlib-wasm", "dist");
  const file = fs.readdirSync(dist).find((f) => /^hnswlib-.*\.js$/.test(f));
  const factory = (await import(pathToFileURL(path.join(dist, file)).href)).default;
  const lib = await factory();
  const start = performance.now();
  const index = new lib.HierarchicalNSW("ip", DIM, "");
  index.initIndex(N, 16, 200, config.seed);
  index.addPoints(baseRows, baseRows.map((_, i) => i), false);
  const build_s = (performance.now() - start) / 1000;
  const memory = lib.HEAP8.buffer.byteLength / MB;
  for (const ef of config.peer_efs) {
    index.setEfSearch(ef);
    const m = measure((q) => index.searchKnn(q, K, undefined).neighbors);
    row("hnswlib-wasm 0.8.2", `ef=${ef} M=16 efC=200 ip`, m, build_s, memory);
  }
}

async function hnswlibNode() {
  let HierarchicalNSW;
  try {
    ({ HierarchicalNSW } = require(path.join(modules, "hnswlib-node")));
  } catch (e) {
    notes.push(`hnswlib-node did not load (${e.message.split("\n")[0]}); its rows are missing`);
    return;
  }
  const rss = process.memoryUsage().rss;
  const start = performance.now();
  const index = new HierarchicalNSW("ip", DIM);
  index.initIndex(N, 16, 200, config.seed);
  baseRows.forEach((v, i) => index.addPoint(Array.from(v), i));
  const build_s = (performance.now() - start) / 1000;
  const memory = (process.memoryUsage().rss - rss) / MB;
  for (const ef of config.peer_efs) {
    index.setEf(ef);
    const m = measure((q) => index.searchKnn(Array.from(q), K).neighbors);
    row("hnswlib-node 3.0.0 (native)", `ef=${ef} M=16 efC=200 ip`, m, build_s, memory);
  }
  notes.push("hnswlib-node is native code (no wasm); its queries pass number[] (its API copies from JS arrays); memory is the RSS growth while building");
}

async function edgevec() {
  const dir = path.join(modules, "edgevec");
  const ev = await import(pathToFileURL(path.join(dir, "edgevec.js")).href);
  const exports = ev.initSync({ module: fs.readFileSync(path.join(dir, "edgevec_bg.wasm")) });
  const start = performance.now();
  const cfg = new ev.EdgeVecConfig(DIM);
  // Its cosine and dot metrics return the least similar vectors first in
  // 0.9.0; on unit vectors l2 ranks exactly as cosine does.
  cfg.metric = "l2";
  cfg.m = 16;
  cfg.m0 = 32;
  cfg.ef_construction = 200;
  cfg.ef_search = config.edgevec_ef;
  const index = new ev.EdgeVec(cfg);
  baseRows.forEach((v) => index.insert(v));
  const build_s = (performance.now() - start) / 1000;
  const memory = exports.memory.buffer.byteLength / MB;
  // Its ids start at 1.
  const m = measure((q) => index.search(q, K).map((r) => r.id - 1));
  row("edgevec 0.9.0", `ef=${config.edgevec_ef} (fixed at build) M=16 efC=200 l2`, m, build_s, memory);
  notes.push("edgevec: metric l2 on unit vectors (its cosine/dot order is reversed in 0.9.0); ids shifted by 1; ef is fixed at build, so one row");
}

async function voy() {
  // Published for bundlers (it imports its .wasm as a module): instantiate the
  // wasm by hand with its JS glue as the import object.
  const dir = path.join(modules, "voy-search");
  const glue = await import(pathToFileURL(path.join(dir, "voy_search_bg.js")).href);
  const { instance } = await WebAssembly.instantiate(fs.readFileSync(path.join(dir, "voy_search_bg.wasm")), { "./voy_search_bg.js": glue });
  glue.__wbg_set_wasm(instance.exports);
  const start = performance.now();
  const index = new glue.Voy({
    embeddings: baseRows.map((v, i) => ({ id: String(i), title: "", url: "", embeddings: Array.from(v) })),
  });
  const build_s = (performance.now() - start) / 1000;
  const memory = instance.exports.memory.buffer.byteLength / MB;
  const qs = queries.slice(0, config.voy_queries);
  const m = measure((q) => index.search(q, K).neighbors.map((n) => Number(n.id)), 1, qs);
  row("voy-search 0.6.3", `k-d tree, ${qs.length} queries, 1 round`, m, build_s, memory);
  notes.push(`voy-search: published for bundlers, instantiated by hand; measured on the first ${qs.length} queries, one round`);
}

// ---------------------------------------------------------------------- run
const scan = await tidemark();
for (const [name, peer] of [["hnswlib-wasm", hnswlibWasm], ["hnswlib-node", hnswlibNode], ["edgevec", edgevec], ["voy-search", voy]]) {
  if (!config.peers.includes(name)) continue;
  try {
    await peer();
  } catch (e) {
    notes.push(`${name} failed: ${e.stack || e}`);
    log(`${name} failed: ${e}`);
  }
}

fs.writeFileSync(config.out, JSON.stringify({
  dataset: { path: config.data, vectors: N, dim: DIM, queries: Q, k: K, node: process.version },
  rows,
  scan: {
    f32_ns_per_vector: round(scan.f32Scan, 2),
    int8_ns_per_vector: round(scan.int8Scan, 2),
    bandwidth_bound_ns_per_vector: round(scan.bound, 2),
  },
  checks,
  notes,
}, null, 1));
