// The writer state `cargo xtask bench sdk` measures against: two collections
// in a real writer, each shard's latest snapshot sealed and exactly at the
// shard's head, so that a new client bootstraps from snapshots alone.
//
// Why the padding: the writer snapshots a shard in the background at least
// every SNAPSHOT_EVERY (10,000) log entries after the previous snapshot
// (regional-writer/src/engine.rs); requesting a snapshot of an empty shard
// starts that count at 0. A shard holding, say, 12,500 records would
// otherwise have its latest snapshot at 10,000 and a client would read the
// other 2,500 from the log. So each shard is filled in phases of exactly
// 10,000 entries, and the first phase is topped up with padding entries:
// a few records per shard that are put, patched and deleted again (they
// are not live in any snapshot; the deleted records' small Automerge
// documents stay in the snapshot's document section, as any deleted record
// does). After each phase the loader has every shard's snapshot sealed at
// the head (the admin seal endpoint) before it writes on.
//
// Building this takes minutes (the writer seals every shard's HNSW graph),
// so the writer's data dir is kept as a template under the work dir and
// each run starts a writer on a copy of it.
import { cpSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { call, startWriter, xorshift } from "../../tests/edge/writer.mjs";

export const NS = "bench";
export const DIM = 384;
/** The writer's SNAPSHOT_EVERY. */
export const SNAPSHOT_EVERY = 10_000;
const BATCH = 250;
const IN_FLIGHT = 4;
/** Padding records per shard (each gets a put, patches and a delete). */
const PAD_RECORDS = 50;
/**
 * Bump when what is loaded changes, so an old template is rebuilt. 2: the
 * stored snapshots are wire version 2 (a version 1 template would measure
 * the old signature check). 3: records a put created keep their first
 * change as their document, which the snapshots then carry.
 */
const TEMPLATE_VERSION = 3;

/** The dataset as float rows, names and texts. */
export function readDataset(dir) {
  const floats = (file) => {
    const bytes = readFileSync(join(dir, file));
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  };
  const texts = readFileSync(join(dir, "texts.jsonl"), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line));
  const base = floats("base.f32");
  const rows = texts.length;
  if (base.length !== rows * DIM) throw new Error(`${dir}/base.f32 is not ${rows} × ${DIM} f32`);
  const queries = floats("queries.f32");
  const gt = new Int32Array(readFileSync(join(dir, "gt.i32")).buffer.slice(0));
  return { rows, base, texts, queries, gt, row: (r) => base.subarray(r * DIM, (r + 1) * DIM) };
}

/**
 * `count` records from the dataset's rows: record i is row i mod rows;
 * copies after the first (i ≥ rows) get each component perturbed by
 * uniform noise of ±amplitude/2 (seeded by the copy and row), renormalised.
 */
export function records(data, { count, prefix, amplitude, seed }) {
  const out = [];
  for (let i = 0; i < count; i++) {
    const row = i % data.rows;
    const copy = Math.floor(i / data.rows);
    const source = data.row(row);
    let vector = source;
    if (copy > 0) {
      const next = xorshift(seed ^ Math.imul(copy, 0x9e3779b1) ^ Math.imul(row + 1, 0x85ebca6b));
      vector = new Float32Array(DIM);
      let norm = 0;
      for (let d = 0; d < DIM; d++) {
        vector[d] = source[d] + amplitude * next();
        norm += vector[d] * vector[d];
      }
      norm = Math.sqrt(norm);
      for (let d = 0; d < DIM; d++) vector[d] /= norm;
    }
    const text = data.texts[row];
    const name = text.split(":")[0].trim();
    const fields = copy > 0 ? { name, text, row, copy } : { name, text, row };
    out.push({ id: `${prefix}${i}`, fields, vector });
  }
  return out;
}

/** Mean cosine between perturbed copies and their rows. */
export function copyCosine(data, recs) {
  let sum = 0;
  let n = 0;
  for (const r of recs) {
    if (!r.fields.copy) continue;
    const src = data.row(r.fields.row);
    let dot = 0;
    for (let d = 0; d < DIM; d++) dot += src[d] * r.vector[d];
    sum += dot;
    n++;
  }
  return n ? sum / n : 1;
}

/**
 * The template writer data dir for `collections` (each `{ name, shards,
 * records }`), built if missing. `shardOf(collection, id, shards)` is the
 * SDK's own routing. Resolves to `{ dir, built, seconds }`.
 */
export async function writerTemplate({ work, key, collections, shardOf, log }) {
  const dir = join(work, `writer-v${TEMPLATE_VERSION}-${key}`);
  const marker = join(dir, "bench-ready.json");
  if (existsSync(marker)) return { dir, built: false, seconds: 0 };
  rmSync(dir, { recursive: true, force: true });
  const building = mkdtempSync(join(work, "writer-building-"));
  const started = performance.now();
  const writer = await startWriter({ dataDir: building });
  try {
    const token = writer.token(NS, "read,write,admin");
    const summary = {};
    for (const c of collections) {
      summary[c.name] = await loadCollection(writer, token, c, shardOf, log);
    }
    writeFileSync(join(building, "bench-ready.json"), JSON.stringify(summary, null, 2));
  } finally {
    await writer.stop();
  }
  renameSync(building, dir);
  return { dir, built: true, seconds: (performance.now() - started) / 1000 };
}

/** Starts a writer on a fresh copy of the template; `stop()` deletes the copy. */
export async function writerFromTemplate(template, work) {
  const dir = mkdtempSync(join(work, "writer-run-"));
  cpSync(template, dir, { recursive: true });
  const writer = await startWriter({ dataDir: dir });
  return {
    ...writer,
    async stop() {
      await writer.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Sends `ops` in batches, IN_FLIGHT at a time. */
async function send(writer, token, path, ops) {
  const batches = [];
  for (let at = 0; at < ops.length; at += BATCH) batches.push(ops.slice(at, at + BATCH));
  let next = 0;
  const worker = async () => {
    while (next < batches.length) {
      const batch = batches[next++];
      const res = await call(writer.url, "POST", `${path}/records`, { token, body: { ops: batch } });
      if (res.status !== 200) throw new Error(`write: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
}

const putOp = (r) => ({ op: "put", id: r.id, fields: r.fields, vector: Array.from(r.vector) });

/** Padding ops for one shard: `entries` log entries from a few records that end deleted. */
function padding(shard, entries, ids) {
  const count = Math.min(PAD_RECORDS, Math.floor(entries / 2));
  if (entries < 2 || count < 1) throw new Error(`shard ${shard}: cannot pad ${entries} entries`);
  const pads = ids.slice(0, count);
  const patches = entries - 2 * count;
  // Rounds of ops with distinct ids, so that each op is one log entry.
  const rounds = [pads.map((id, k) => ({ op: "put", id, fields: { pad: k } }))];
  for (let done = 0, round = 1; done < patches; round++) {
    const ops = [];
    for (const id of pads) {
      if (done === patches) break;
      ops.push({ op: "patch", id, fields: { round } });
      done++;
    }
    rounds.push(ops);
  }
  rounds.push(pads.map((id) => ({ op: "delete", id })));
  return rounds;
}

async function heads(writer, token, path, shards) {
  const out = [];
  for (let s = 0; s < shards; s++) {
    const res = await call(writer.url, "GET", `${path}/shards/${s}/head`, { token });
    if (res.status !== 200) throw new Error(`head: ${res.status}`);
    out.push(res.body.head);
  }
  return out;
}

/** The latest snapshot's offset and size (requesting it builds one if there is none). */
export async function snapshotOf(writer, token, path, shard) {
  const res = await call(writer.url, "GET", `${path}/shards/${shard}/snapshot`, { token });
  if (res.status !== 200) throw new Error(`snapshot of shard ${shard}: ${res.status}`);
  return { offset: Number(res.headers.get("x-tidemark-offset")), bytes: res.body.length };
}

async function loadCollection(writer, token, { name, shards, records: recs }, shardOf, log) {
  const path = `/v1/ns/${NS}/collections/${name}`;
  const made = await call(writer.url, "PUT", path, { token, body: { dimension: DIM, metric: "cosine", shards } });
  if (made.status !== 201) throw new Error(`create ${name}: ${made.status} ${JSON.stringify(made.body)}`);
  // A snapshot of each empty shard starts the writer's count at offset 0.
  for (let s = 0; s < shards; s++) await snapshotOf(writer, token, path, s);

  const perShard = Array.from({ length: shards }, () => []);
  for (const r of recs) perShard[shardOf(name, r.id, shards)].push(r);
  const phases = Math.max(1, ...perShard.map((list) => Math.ceil(list.length / SNAPSHOT_EVERY)));
  const padIds = Array.from({ length: shards }, () => []);
  for (let k = 0; padIds.some((ids) => ids.length < PAD_RECORDS); k++) {
    const id = `pad${k}`;
    const ids = padIds[shardOf(name, id, shards)];
    if (ids.length < PAD_RECORDS) ids.push(id);
  }
  // Per shard: the last phases take SNAPSHOT_EVERY records each, the first
  // the rest plus padding up to SNAPSHOT_EVERY entries.
  const plan = perShard.map((list, s) => {
    const first = list.length - SNAPSHOT_EVERY * (phases - 1);
    if (first < 0 || first > SNAPSHOT_EVERY) throw new Error(`${name}: shard ${s} holds ${list.length} records, too uneven`);
    const chunks = [list.slice(0, first)];
    for (let p = 1; p < phases; p++) chunks.push(list.slice(first + (p - 1) * SNAPSHOT_EVERY, first + p * SNAPSHOT_EVERY));
    return { chunks, pad: SNAPSHOT_EVERY - first };
  });
  for (let p = 0; p < phases; p++) {
    const started = performance.now();
    if (p === 0) {
      const rounds = plan.map((s, shard) => (s.pad > 0 ? padding(shard, s.pad, padIds[shard]) : []));
      const longest = Math.max(...rounds.map((r) => r.length));
      for (let i = 0; i < longest; i++) {
        // The same round of every shard in one go: ids are distinct within it.
        await send(writer, token, path, rounds.flatMap((r) => r[i] ?? []));
      }
    }
    await send(writer, token, path, plan.flatMap((s) => s.chunks[p].map(putOp)));
    const expected = SNAPSHOT_EVERY * (p + 1);
    const got = await heads(writer, token, path, shards);
    if (got.some((h) => h !== expected)) {
      throw new Error(`${name}: after phase ${p + 1} the shard heads are ${got}, expected ${expected} each`);
    }
    const wrote = performance.now();
    // Each shard's snapshot sealed at this head, asked for now rather than
    // left to the background policy (which reseals at offsets of its own).
    for (let s = 0; s < shards; s++) {
      const sealed = await call(writer.url, "POST", `${path}/shards/${s}/snapshot`, { token });
      if (sealed.status !== 202 || sealed.body.offset !== expected) {
        throw new Error(`seal shard ${s}: ${sealed.status} ${JSON.stringify(sealed.body)}`);
      }
    }
    for (;;) {
      const offsets = [];
      for (let s = 0; s < shards; s++) offsets.push((await snapshotOf(writer, token, path, s)).offset);
      if (offsets.every((o) => o === expected)) break;
      if (offsets.some((o) => o > expected)) throw new Error(`${name}: snapshot past the head: ${offsets}`);
      if (performance.now() - wrote > 15 * 60_000) throw new Error(`${name}: snapshots still at ${offsets}`);
      await new Promise((r) => setTimeout(r, 2000));
    }
    log(
      `  writer: ${name} phase ${p + 1}/${phases}: ${SNAPSHOT_EVERY} entries per shard written in ${((wrote - started) / 1000).toFixed(1)} s, ` +
        `sealed snapshots at ${expected} in ${((performance.now() - wrote) / 1000).toFixed(1)} s`,
    );
  }
  return { shards, records: recs.length, head: SNAPSHOT_EVERY * phases, perShard: perShard.map((l) => l.length) };
}
