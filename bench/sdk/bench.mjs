// `cargo xtask bench sdk [--json FILE]`: the browser SDK (the npm package
// `tidemark` that `cargo xtask build sdk` makes) in headless Chromium
// against the real release writer, all on 127.0.0.1.
//
//   node bench/sdk/bench.mjs --work DIR [--json FILE] [--clients N]
//
// 1. bootstrap: a new client on a fresh browser profile (its own on-disk
//    IndexedDB) bootstraps 50,000 records × 384 from the writer's sealed
//    snapshots (bench/sdk/load.mjs makes sure they sit at the shard heads,
//    and each is requested once before any timing, so the writer only
//    serves bytes). Times from `Tidemark.open` to the first search over the
//    whole replica with hits (searchable) and to the end of the sync pass
//    (persisted in IndexedDB); then a reopen on what was persisted.
// 2. search: p50 of the local search over 20,000 records (the real dataset).
// 3. writes: bytes of the SDK's binary write envelope per record change next
//    to the same changes as the JSON API's body (which the writer accepts).
// Each of 1 and 2 runs on N fresh clients; figures are medians. A last,
// untimed client runs under the DevTools CPU profiler for the breakdown.
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { serveApp } from "../../demo/serve.mjs";
import { CHROMIUM, launchProfile } from "../../tests/system/chromium.mjs";
import { call } from "../../tests/edge/writer.mjs";
import { DIM, NS, copyCosine, readDataset, records, snapshotOf, writerFromTemplate, writerTemplate } from "./load.mjs";
import { summarize } from "./profile.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");
const { values: args } = parseArgs({
  options: {
    json: { type: "string" },
    work: { type: "string", default: join(process.env.CARGO_TARGET_DIR ?? join(repo, "target"), "bench-sdk") },
    clients: { type: "string", default: "3" },
  },
});
const DATA = process.env.TIDEMARK_DATA ?? join(repo, "..", "shared", "data", "debian-minilm-20k");
const CLIENTS = Math.max(1, Number(args.clients));
const SHARDS = 4;
const BOOT = { name: "boot50k", count: 50_000, prefix: "p" };
const SEARCH = { name: "search20k", count: 20_000, prefix: "d" };
const NOISE = 0.02;
const SEED = 42;
const K = 10;
const REPS = 5;
const WRITE_ROWS = Array.from({ length: 100 }, (_, i) => i);
const GOAL_BOOTSTRAP_MS = 1000;

const work = args.work;
mkdirSync(work, { recursive: true });
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const r1 = (x) => Math.round(x * 10) / 10;
const r3 = (x) => Math.round(x * 1000) / 1000;
const mb = (b) => `${(b / 1e6).toFixed(1)} MB`;

// The SDK's own shard routing, from its package in node.
const pkg = join(repo, "browser-sdk", "pkg");
const sdk = await import(pathToFileURL(join(pkg, "tidemark.js")).href);
await sdk.default({ module_or_path: readFileSync(join(pkg, "tidemark_bg.wasm")) });
const shardOf = (collection, id, shards) => sdk.shardFor(NS, collection, id, shards);

const data = readDataset(DATA);
const bootRecords = records(data, { count: BOOT.count, prefix: BOOT.prefix, amplitude: NOISE, seed: SEED });
const searchRecords = records(data, { count: SEARCH.count, prefix: SEARCH.prefix, amplitude: 0, seed: SEED });
const key = createHash("sha256")
  .update(JSON.stringify({ BOOT, SEARCH, SHARDS, NOISE, SEED, size: statSync(join(DATA, "base.f32")).size, rows: data.rows }))
  .digest("hex")
  .slice(0, 12);

console.log("bench sdk: inputs");
console.log(`  dataset      ${DATA} (${data.rows} × ${DIM} f32 MiniLM embeddings, ${data.queries.length / DIM} queries)`);
console.log(
  `  bootstrap    ${BOOT.count} records: rows 0..${data.rows - 1} as themselves, then two more copies of each row with every` +
    ` component + uniform noise in ±${NOISE / 2}, renormalised (seed ${SEED}; mean cosine to the row ${copyCosine(data, bootRecords).toFixed(4)});` +
    ` fields { name, text, row[, copy] }`,
);
console.log(`  search       ${SEARCH.count} records: the dataset's rows as they are (ids d<row>), k = ${K}, default ef`);
console.log(`  collections  cosine, ${SHARDS} shards each (the import default), namespace ${NS}`);
console.log(`  clients      ${CLIENTS} per measurement, each a new Chromium with a fresh on-disk profile; medians reported`);
console.log(`  chromium     ${CHROMIUM}, headless; the page: bench/sdk/ + browser-sdk/pkg on 127.0.0.1`);

const template = await writerTemplate({
  work,
  key,
  shardOf,
  log: console.log,
  collections: [
    { name: BOOT.name, shards: SHARDS, records: bootRecords },
    { name: SEARCH.name, shards: SHARDS, records: searchRecords },
  ],
});
console.log(
  template.built
    ? `  writer data  built in ${template.seconds.toFixed(0)} s, kept as ${template.dir}`
    : `  writer data  reused ${template.dir} (delete it to rebuild)`,
);

const writer = await writerFromTemplate(template.dir, work);
let app;
const results = {};
try {
  const token = writer.token(NS, "read,write");
  const heads = {};
  // Every shard's latest snapshot, requested once before anything is timed:
  // it is at the head, sealed, and the writer has it stored.
  for (const c of [BOOT, SEARCH]) {
    const path = `/v1/ns/${NS}/collections/${c.name}`;
    heads[c.name] = [];
    const sizes = [];
    for (let s = 0; s < SHARDS; s++) {
      const head = (await call(writer.url, "GET", `${path}/shards/${s}/head`, { token })).body.head;
      const snap = await snapshotOf(writer, token, path, s);
      if (snap.offset !== head) throw new Error(`${c.name} shard ${s}: snapshot at ${snap.offset}, head ${head}`);
      heads[c.name].push(head);
      sizes.push(snap.bytes);
    }
    console.log(
      `  snapshots    ${c.name}: ${SHARDS} signed snapshots at their heads (${heads[c.name].join(", ")}), ` +
        `${mb(sizes.reduce((a, b) => a + b, 0))} in all (${sizes.map(mb).join(", ")}), requested once before timing`,
    );
  }
  console.log(`  writer       ${writer.url} (release build, on a copy of the template)`);

  app = await serveApp({
    app: here,
    dataset: DATA,
    config: { writer: writer.url, namespace: NS, token, writerKey: writer.keys.writer },
  });

  /** A new browser on a fresh profile with the page loaded; `body(page, context)` runs in it. */
  async function withClient(body) {
    const dir = mkdtempSync(join(work, "profile-"));
    const context = await launchProfile(dir);
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      const problems = [];
      page.on("pageerror", (err) => problems.push(err.message));
      page.on("console", (msg) => msg.type() === "error" && problems.push(msg.text()));
      await page.goto(app.url);
      await page.waitForFunction(() => window.bench !== undefined, null, { timeout: 60_000 });
      const out = await body(page, context);
      if (problems.length) throw new Error(`the page reported: ${problems.join("; ")}`);
      return out;
    } finally {
      await context.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }

  const checkBootstrap = (b, name) => {
    const tidemark = Object.values(b.status.tidemark[name] ?? {});
    if (b.status.lastError) throw new Error(`${name}: ${JSON.stringify(b.status.lastError)}`);
    if (tidemark.join() !== heads[name].join()) throw new Error(`${name}: tidemark ${tidemark}, heads ${heads[name]}`);
    if (b.searchable === null) throw new Error(`${name}: no search over the whole replica returned hits`);
  };

  // 1. Bootstrap 50k.
  console.log(`\nbench sdk: bootstrap ${BOOT.count} records into a new client (${CLIENTS} clients)`);
  const boots = [];
  for (let i = 0; i < CLIENTS; i++) {
    const b = await withClient(async (page) => {
      const info = await page.evaluate(() => ({ initMs: window.bench.initMs, version: window.bench.version, kernels: window.bench.kernels }));
      const out = await page.evaluate((a) => window.bench.bootstrap(a), { collection: BOOT.name, shards: SHARDS, dim: DIM });
      const again = await page.evaluate((a) => window.bench.reopen(a), { collection: BOOT.name, dim: DIM });
      return { ...out, ...info, reopen: again };
    });
    checkBootstrap(b, BOOT.name);
    if (!(b.reopen.hits > 0)) throw new Error("the reopened client found nothing");
    const storedBytes = Object.values(b.stored).reduce((a, x) => a + x, 0);
    if (Object.values(b.stored).some((x) => x === 0)) throw new Error(`IndexedDB is missing a shard: ${JSON.stringify(b.stored)}`);
    console.log(
      `  client ${i + 1}: searchable ${b.searchable.toFixed(0)} ms (first shard's hits at ${b.firstResults.toFixed(0)} ms), ` +
        `persisted ${b.persisted.toFixed(0)} ms (${mb(storedBytes)} in IndexedDB), reopen → search ${b.reopen.reopenMs.toFixed(0)} ms; ` +
        `wasm init ${b.initMs.toFixed(0)} ms (not counted)`,
    );
    boots.push(b);
  }
  results.bootstrap_50k_ms = r1(median(boots.map((b) => b.searchable)));
  results.persisted_50k_ms = r1(median(boots.map((b) => b.persisted)));
  results.first_results_50k_ms = r1(median(boots.map((b) => b.firstResults)));
  results.reopen_50k_ms = r1(median(boots.map((b) => b.reopen.reopenMs)));

  // 2. Search p50 on 20k.
  console.log(`\nbench sdk: local search on ${SEARCH.count} records (${CLIENTS} clients, ${data.queries.length / DIM} queries × ${REPS} after a warm-up)`);
  const searches = [];
  for (let i = 0; i < CLIENTS; i++) {
    const s = await withClient((page) =>
      page.evaluate((a) => window.bench.search(a), { collection: SEARCH.name, shards: SHARDS, dim: DIM, k: K, reps: REPS }),
    );
    checkBootstrap(s.bootstrap, SEARCH.name);
    let found = 0;
    s.ids.forEach((ids, q) => {
      const truth = new Set(Array.from(data.gt.subarray(q * K, (q + 1) * K), (row) => `d${row}`));
      found += ids.filter((id) => truth.has(id)).length;
    });
    s.recall = found / (s.ids.length * K);
    s.p50 = median(s.latencies);
    s.exactP50 = median(s.exact);
    console.log(
      `  client ${i + 1}: p50 ${s.p50.toFixed(3)} ms, recall@10 ${s.recall.toFixed(3)}; exact scan p50 ${s.exactP50.toFixed(2)} ms; ` +
        `(bootstrap of the 20k: searchable ${s.bootstrap.searchable.toFixed(0)} ms)`,
    );
    searches.push(s);
  }
  results.search_p50_ms = r3(median(searches.map((s) => s.p50)));
  results.search_recall_at_10 = r3(median(searches.map((s) => s.recall)));
  results.search_exact_p50_ms = r3(median(searches.map((s) => s.exactP50)));

  // 3. Bytes per change.
  console.log(`\nbench sdk: bytes on the wire per record change (request bodies; HTTP headers, the same for both, not counted)`);
  const kinds = await withClient((page) =>
    page.evaluate((a) => window.bench.writes(a), { collection: SEARCH.name, shards: SHARDS, dim: DIM, rows: WRITE_ROWS }),
  );
  const path = `/v1/ns/${NS}/collections/${SEARCH.name}`;
  for (const k of kinds) {
    // The JSON body is a real request: the writer must take it.
    const res = await call(writer.url, "POST", `${path}/records`, { token, body: k.json });
    if (res.status !== 200) throw new Error(`${k.kind}: the writer refused the JSON body: ${res.status}`);
    const wire = k.frames.reduce((a, b) => a + b, 0);
    const json = Buffer.byteLength(k.json);
    k.bytesPerChange = wire / k.changes;
    k.jsonBytesPerChange = json / k.changes;
    console.log(
      `  ${k.kind.padEnd(13)} ${String(k.changes).padStart(3)} changes in ${k.frames.length} frame(s): ` +
        `${k.bytesPerChange.toFixed(0)} B/change binary, ${k.jsonBytesPerChange.toFixed(0)} B/change JSON ` +
        `(${(k.jsonBytesPerChange / k.bytesPerChange).toFixed(2)}×) — ${k.what}`,
    );
  }
  const put = kinds.find((k) => k.kind === "put");
  const patch = kinds.find((k) => k.kind === "patch");
  const single = kinds.find((k) => k.kind === "patch_single");
  results.bytes_per_change = Math.round(put.bytesPerChange);
  results.json_bytes_per_change = Math.round(put.jsonBytesPerChange);
  results.patch_bytes_per_change = Math.round(patch.bytesPerChange);
  results.patch_json_bytes_per_change = Math.round(patch.jsonBytesPerChange);
  results.single_patch_bytes = Math.round(single.bytesPerChange);
  results.single_patch_json_bytes = Math.round(single.jsonBytesPerChange);
  console.log("  (bytes_per_change / json_bytes_per_change: the put, in the SDK's push batch of 100)");

  // 4. Where the bootstrap's time goes.
  console.log(`\nbench sdk: where the 50k bootstrap's time goes (median of the ${CLIENTS} clients; ms from Tidemark.open)`);
  const phases = boots.map((b) => breakdown(b, BOOT.name));
  const labels = Object.keys(phases[0]);
  for (const label of labels) {
    console.log(`  ${label.padEnd(58)} ${median(phases.map((p) => p[label])).toFixed(0).padStart(6)}`);
  }
  results.breakdown_50k_ms = Object.fromEntries(labels.map((l) => [l, r1(median(phases.map((p) => p[l])))]));

  console.log("\nbench sdk: CPU profile of one more 50k bootstrap (DevTools profiler, not timed)");
  const profiled = await withClient(async (page, context) => {
    const cdp = await context.newCDPSession(page);
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: 200 });
    await cdp.send("Profiler.start");
    const out = await page.evaluate((a) => window.bench.bootstrap(a), { collection: BOOT.name, shards: SHARDS, dim: DIM });
    const { profile } = await cdp.send("Profiler.stop");
    return { out, profile };
  });
  const profileFile = join(work, "bootstrap-50k.cpuprofile");
  writeFileSync(profileFile, JSON.stringify(profiled.profile));
  const summary = summarize(profiled.profile);
  console.log(
    `  persisted at ${profiled.out.persisted.toFixed(0)} ms under the profiler; main thread busy ${summary.busyMs.toFixed(0)} ms, idle ${summary.idleMs.toFixed(0)} ms (waiting on network / IndexedDB)`,
  );
  for (const [label, ms] of summary.steps) console.log(`  ${label.padEnd(58)} ${ms.toFixed(0).padStart(6)}`);
  console.log("  top functions by self time:");
  for (const [name, ms] of summary.selfTop) console.log(`    ${ms.toFixed(0).padStart(6)} ms  ${name.slice(0, 110)}`);
  console.log(`  profile: ${profileFile} (open in Chrome DevTools → Performance)`);
  results.profile_50k = { busy_ms: r1(summary.busyMs), steps_ms: Object.fromEntries(summary.steps.map(([l, ms]) => [l.trim(), r1(ms)])) };
  results.inputs = {
    dataset: DATA,
    records_bootstrap: BOOT.count,
    records_search: SEARCH.count,
    dim: DIM,
    shards: SHARDS,
    noise: NOISE,
    seed: SEED,
    clients: CLIENTS,
    k: K,
    sdk_version: boots[0].version,
    kernels: boots[0].kernels,
  };
} finally {
  await app?.close();
  await writer.stop();
}

console.log("\nbench sdk: results");
for (const key of ["bootstrap_50k_ms", "persisted_50k_ms", "search_p50_ms", "bytes_per_change", "json_bytes_per_change"]) {
  console.log(`  ${key.padEnd(24)} ${results[key]}`);
}
console.log(
  `  goal: searchable ≤ ${GOAL_BOOTSTRAP_MS} ms for 50k: ${results.bootstrap_50k_ms <= GOAL_BOOTSTRAP_MS ? "met" : "missed"} (${results.bootstrap_50k_ms} ms)`,
);
writeFileSync(join(work, "results.json"), JSON.stringify(results, null, 2) + "\n");
if (args.json) {
  writeFileSync(args.json, JSON.stringify(results, null, 2) + "\n");
  console.log(`bench sdk: wrote ${args.json}`);
}

/** One client's bootstrap timeline cut into consecutive phases (ms, summed over shards). */
function breakdown(b, name) {
  const gaps = "other (between steps, after the last transaction)";
  const encode = "encode shards for IndexedDB (take_persist)";
  const idb = "IndexedDB transaction (put → complete)";
  const out = {
    "open: Tidemark.open (IndexedDB open, key saved)": b.open,
    "collection: schema fetch + IndexedDB write": b.collection - b.open,
    "head requests": 0,
    "snapshot fetch (request → last byte)": 0,
    "verify + decode + load into replica and index (wasm)": 0,
    "change event (ids to JS; the last shard's search)": 0,
    [encode]: 0,
    [idb]: 0,
    [gaps]: 0,
  };
  // The transactions that store shards, in order: one per shard or one for
  // the whole pass, depending on when the SDK persists.
  const txs = b.idb
    .filter((t) => t.puts.some((p) => p.key.startsWith(`collection/${name}/shard/`)))
    .sort((x, y) => x.start - y.start);
  if (txs.length === 0 || txs.some((t) => !t.end)) throw new Error("incomplete IndexedDB timeline");
  let at = b.collection;
  let next = 0;
  const persistUpTo = (limit) => {
    while (next < txs.length && txs[next].end <= limit) {
      out[encode] += Math.max(0, txs[next].start - at);
      out[idb] += txs[next].end - Math.max(at, txs[next].start);
      at = txs[next].end;
      next += 1;
    }
  };
  for (let s = 0; s < b.shards; s++) {
    const head = b.resources.find((r) => r.name.includes(`/shards/${s}/head`));
    const snap = b.resources.find((r) => r.name.includes(`/shards/${s}/snapshot`));
    const loaded = b.events.find((e) => e.kind === "sync" && e.shard === s && e.phase === "bootstrap" && e.total > 0 && e.done === e.total);
    const changed = b.events.find((e) => e.kind === "change" && e.t >= loaded.t);
    if (!head || !snap || !loaded || !changed) throw new Error(`shard ${s}: incomplete timeline`);
    persistUpTo(head.start);
    out[gaps] += head.start - at + (snap.start - head.end);
    out["head requests"] += head.end - head.start;
    out["snapshot fetch (request → last byte)"] += snap.end - snap.start;
    out["verify + decode + load into replica and index (wasm)"] += loaded.t - snap.end;
    out["change event (ids to JS; the last shard's search)"] += changed.end - loaded.t;
    at = changed.end;
  }
  persistUpTo(Infinity);
  out[gaps] += b.persisted - at;
  out["= persisted"] = b.persisted;
  return out;
}
