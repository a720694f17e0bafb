// The measuring side of `cargo xtask bench sdk`, in the browser: the SDK's
// npm package as an app loads it, driven by bench/sdk/bench.mjs through
// `window.bench`. Timings are `performance.now()` in the page; the node side
// turns the timelines into figures.
//
// To see where a bootstrap spends its time without touching the SDK, the
// page records (cheaply, as timestamps only): the SDK's own `sync` and
// `change` events, the Resource Timing entries of its requests, and each
// IndexedDB readwrite transaction (start, the keys and sizes put, complete).
import init, { Tidemark, kernels, version } from "/pkg/tidemark.js";

const config = await (await fetch("/config.json")).json();

const idb = { txs: [] };
{
  const transaction = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (...args) {
    const tx = transaction.apply(this, args);
    if (args[1] === "readwrite") {
      const record = { start: performance.now(), end: null, puts: [] };
      idb.txs.push(record);
      tx.__bench = record;
      tx.addEventListener("complete", () => (record.end = performance.now()));
    }
    return tx;
  };
  const put = IDBObjectStore.prototype.put;
  IDBObjectStore.prototype.put = function (value, key) {
    this.transaction.__bench?.puts.push({ t: performance.now(), key: String(key), bytes: value?.byteLength ?? 0 });
    return put.call(this, value, key);
  };
}

const initStarted = performance.now();
await init();
const initMs = performance.now() - initStarted;

let queries;
async function loadQueries() {
  queries ??= new Float32Array(await (await fetch("/data/queries.f32")).arrayBuffer());
  return queries;
}
const query = (qs, i, dim) => qs.subarray(i * dim, (i + 1) * dim);

/** Stops a client and frees its wasm memory (the next client in the page starts clean). */
function release(db, coll) {
  db.close();
  coll.free();
  db.free();
}

const dbName = () => `tidemark:${config.writer}:${config.namespace}`;

/** Sizes of what IndexedDB holds for `collection`, read back with a fresh connection. */
async function stored(collection, shards) {
  const db = await new Promise((ok, fail) => {
    const req = indexedDB.open(dbName());
    req.onsuccess = () => ok(req.result);
    req.onerror = () => fail(req.error);
  });
  try {
    const keys = [];
    for (let s = 0; s < shards; s++) keys.push(`collection/${collection}/shard/${s}`, `collection/${collection}/segment/${s}`);
    const tx = db.transaction("kv");
    const sizes = await Promise.all(
      keys.map(
        (key) =>
          new Promise((ok, fail) => {
            const req = tx.objectStore("kv").get(key);
            req.onsuccess = () => ok(req.result?.byteLength ?? 0);
            req.onerror = () => fail(req.error);
          }),
      ),
    );
    return Object.fromEntries(keys.map((k, i) => [k, sizes[i]]));
  } finally {
    db.close();
  }
}

/** A client of the bench's writer that syncs only when asked. */
function open(persist, fetchFn) {
  return Tidemark.open({
    url: config.writer,
    namespace: config.namespace,
    token: config.token,
    writerKey: config.writerKey,
    persist,
    autoSync: false,
    ...(fetchFn ? { fetch: fetchFn } : {}),
  });
}

/**
 * A new client (on this page's empty IndexedDB) bootstraps `collection`:
 * `Tidemark.open`, `db.collection`, one `db.sync()` pass. "Searchable" is the
 * first search over the whole replica that returns hits, run from the
 * `change` event of the last shard's snapshot; "persisted" is when the pass
 * ends, which is after IndexedDB completed its last transaction.
 */
async function bootstrap({ collection, shards, dim, persist = "indexeddb", fetch: fetchFn, keep = false }) {
  const qs = await loadQueries();
  const q0 = query(qs, 0, dim);
  idb.txs.length = 0;
  performance.clearResourceTimings();
  performance.setResourceTimingBufferSize(10_000);
  const events = [];
  const loaded = new Set();
  const out = { shards, searchable: null, firstResults: null };

  const t0 = performance.now();
  const db = await open(persist, fetchFn);
  out.open = performance.now() - t0;
  const coll = await db.collection(collection);
  out.collection = performance.now() - t0;
  db.on("sync", (p) => {
    events.push({ t: performance.now() - t0, kind: "sync", shard: p.shard, phase: p.phase, done: p.done, total: p.total });
    if (p.phase === "bootstrap" && p.total > 0 && p.done === p.total) loaded.add(p.shard);
  });
  db.on("change", (e) => {
    const event = { t: performance.now() - t0, kind: "change", ids: e.ids.length, source: e.source };
    events.push(event);
    if (e.source !== "remote") return;
    if (out.firstResults === null) {
      const hits = coll.search(q0, { k: 10 });
      if (hits.length) out.firstResults = performance.now() - t0;
    }
    if (out.searchable === null && loaded.size === shards) {
      const s = performance.now();
      const hits = coll.search(q0, { k: 10 });
      const end = performance.now();
      if (hits.length) {
        out.searchable = end - t0;
        out.firstSearchMs = end - s;
        out.firstHits = hits.map((h) => h.id);
      }
    }
    event.end = performance.now() - t0;
  });
  const report = await db.sync();
  out.persisted = performance.now() - t0;
  out.report = report;
  out.status = db.status();
  out.events = events;
  out.resources = performance
    .getEntriesByType("resource")
    .filter((e) => e.name.includes("/v1/"))
    .map((e) => ({ name: new URL(e.name).pathname + new URL(e.name).search, start: e.startTime - t0, end: e.responseEnd - t0 }));
  out.idb = idb.txs.map((tx) => ({
    start: tx.start - t0,
    end: tx.end === null ? null : tx.end - t0,
    puts: tx.puts.map((p) => ({ t: p.t - t0, key: p.key, bytes: p.bytes })),
  }));
  if (persist === "indexeddb") out.stored = await stored(collection, shards);
  if (keep) return { db, coll, out };
  release(db, coll);
  return { out };
}

/** Opens the client again on what the first one persisted, offline-capable: to the first search. */
async function reopen({ collection, dim }) {
  const q0 = query(await loadQueries(), 0, dim);
  const t0 = performance.now();
  const db = await open("indexeddb");
  const coll = await db.collection(collection);
  const hits = coll.search(q0, { k: 10 });
  const ms = performance.now() - t0;
  release(db, coll);
  return { reopenMs: ms, hits: hits.length };
}

/** Bootstraps, then times every sample query `reps` times after a warm-up pass. */
async function search({ collection, shards, dim, k, reps }) {
  const { db, coll, out } = await bootstrap({ collection, shards, dim, keep: true });
  const qs = await loadQueries();
  const count = qs.length / dim;
  const ids = [];
  for (let i = 0; i < count; i++) ids.push(coll.search(query(qs, i, dim), { k }).map((h) => h.id));
  const latencies = [];
  for (let i = 0; i < count; i++) {
    const q = query(qs, i, dim);
    const s = performance.now();
    for (let r = 0; r < reps; r++) coll.search(q, { k });
    latencies.push((performance.now() - s) / reps);
  }
  const exact = [];
  for (let i = 0; i < count; i++) {
    const q = query(qs, i, dim);
    const s = performance.now();
    coll.search(q, { k, exact: true });
    exact.push(performance.now() - s);
  }
  release(db, coll);
  return { bootstrap: out, ids, latencies, exact };
}

/** `x` as the shortest decimal that reads back as the same f32 (the most compact fair JSON). */
function f32(x) {
  for (let p = 1; p < 9; p++) {
    const short = Number(x.toPrecision(p));
    if (Math.fround(short) === x) return short;
  }
  return Number(x.toPrecision(9));
}

/**
 * The bytes the SDK sends for record changes (bodies of its POST …/batch
 * requests, the binary `WriteBatch` envelope) next to the same changes as
 * the JSON API's body. A client with a memory store syncs the collection,
 * then makes each kind of change offline-style (autoSync off) and syncs.
 */
async function writes({ collection, shards, dim, rows }) {
  const frames = [];
  const capture = (url, init) => {
    if (init?.method === "POST" && String(url).endsWith("/batch")) frames.push(init.body.byteLength);
    return fetch(url, init);
  };
  const { db, coll } = await bootstrap({ collection, shards, dim, persist: "memory", fetch: capture, keep: true });
  const kinds = [
    {
      kind: "put",
      what: "put of a new record: the fields of a dataset record and its 384-d vector",
      changes: rows.map((r) => {
        const rec = coll.get(`d${r}`);
        return { id: `w${r}`, fields: rec.fields, vector: rec.vector };
      }),
      apply: (c) => coll.put(c.id, c.fields, c.vector),
      json: (c) => ({ op: "put", id: c.id, fields: c.fields, vector: Array.from(c.vector, f32) }),
    },
    {
      kind: "patch",
      what: "field update of an existing record: { starred: true }",
      changes: rows.map((r) => ({ id: `d${r}`, patch: { starred: true } })),
      apply: (c) => coll.update(c.id, c.patch),
      json: (c) => ({ op: "patch", id: c.id, fields: c.patch }),
    },
    {
      kind: "patch_single",
      what: "one field update sent on its own: { note: \"checked\" }",
      changes: [{ id: `d${rows.at(-1) + 1}`, patch: { note: "checked" } }],
      apply: (c) => coll.update(c.id, c.patch),
      json: (c) => ({ op: "patch", id: c.id, fields: c.patch }),
    },
  ];
  const results = [];
  for (const kind of kinds) {
    frames.length = 0;
    for (const c of kind.changes) await kind.apply(c);
    await db.sync();
    const status = db.status();
    if (status.pending !== 0 || status.lastError) throw new Error(`${kind.kind}: ${JSON.stringify(status)}`);
    results.push({
      kind: kind.kind,
      what: kind.what,
      changes: kind.changes.length,
      frames: [...frames],
      json: JSON.stringify({ ops: kind.changes.map(kind.json) }),
    });
  }
  release(db, coll);
  return results;
}

window.bench = { initMs, version: version(), kernels: kernels(), bootstrap: (a) => bootstrap(a).then((r) => r.out), reopen, search, writes };
