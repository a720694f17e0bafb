// End to end: the real writer process and the real edge worker in workerd,
// both on 127.0.0.1. The edge bootstraps from the writer's signed
// snapshots, follows its signed log, and must answer like the writer.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { generateKeyPairSync } from "node:crypto";
import { freePort, startEdge } from "./harness.mjs";
import { call, invalidationFrame, startWriter, stripSignature, vectors } from "./writer.mjs";

const NS = "acme";
const COLL = "notes";
const DIM = 8;
const SHARDS = 4;
const base = `/v1/ns/${NS}/collections/${COLL}`;

let writer;
let admin; // read, write, admin on acme
let reader; // read only on acme
let edge;
let edgePort; // fixed, so the writer's webhook reaches the edge across restarts
let slowPort;

function edgeBindings(extra = {}) {
  return {
    WRITER_URL: writer.url,
    WRITER_PUBLIC_KEY: writer.keys.writer,
    TOKEN_PUBLIC_KEY: writer.keys.token_issuer,
    CONSISTENCY_WAIT_MS: "1500",
    ...extra,
  };
}

async function writeRecords(target, ops, token = admin) {
  const res = await call(target, "POST", `${base}/records`, { token, body: { ops } });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.token;
}

function seedOps(count, seed = 1) {
  return vectors(seed, count, DIM).map((vector, i) => ({
    op: "put",
    id: `n${i}`,
    fields: { title: `note ${i}`, parity: i % 2 ? "odd" : "even", n: i },
    vector,
  }));
}

before(async () => {
  edgePort = await freePort();
  slowPort = await freePort();
  writer = await startWriter({
    webhooks: [edgePort, slowPort].map((port) => `http://127.0.0.1:${port}/v1/invalidate`),
  });
  admin = writer.token(NS, "read,write,admin");
  reader = writer.token(NS, "read");
  const created = await call(writer.url, "PUT", base, {
    token: admin,
    body: { dimension: DIM, metric: "cosine", shards: SHARDS },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await writeRecords(writer.url, seedOps(120));
  edge = await startEdge({ bindings: edgeBindings(), port: edgePort });
});

after(async () => {
  await edge?.dispose();
  await writer?.stop();
});

describe("bootstrap and reads", () => {
  test("the edge bootstraps a collection and reports the writer's tidemark", async () => {
    const w = await call(writer.url, "GET", base, { token: reader });
    const e = await call(edge.url, "GET", base, { token: reader });
    assert.equal(e.status, 200, JSON.stringify(e.body));
    assert.deepEqual(e.body, w.body);
    assert.deepEqual(JSON.parse(e.headers.get("x-tidemark")), w.body.tidemark);
    const total = Object.values(e.body.tidemark.shards).reduce((a, b) => a + b, 0);
    assert.equal(total, 120);
  });

  test("records read at the edge equal the writer's", async () => {
    for (const id of ["n0", "n7", "n119"]) {
      const w = await call(writer.url, "GET", `${base}/records/${id}`, { token: reader });
      const e = await call(edge.url, "GET", `${base}/records/${id}`, { token: reader });
      assert.equal(e.status, 200);
      const { tidemark, ...record } = e.body;
      const { tidemark: writerTidemark, ...writerRecord } = w.body;
      assert.deepEqual(record, writerRecord);
      // The edge reports the shard it read; the writer reports every shard.
      const shards = Object.entries(tidemark.shards);
      assert.equal(shards.length, 1);
      assert.equal(shards[0][1], writerTidemark.shards[shards[0][0]]);
    }
    const missing = await call(edge.url, "GET", `${base}/records/nope`, { token: reader });
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, "not_found");
    assert.ok(missing.headers.get("x-tidemark"));
  });

  test("search results equal the writer's at the same tidemark", async () => {
    const queries = vectors(99, 6, DIM);
    const shapes = [
      (v) => ({ vector: v, k: 10 }),
      (v) => ({ vector: v, k: 5, exact: true }),
      (v) => ({ vector: v, k: 7, filter: { eq: { field: "parity", value: "odd" } } }),
      (v) => ({ vector: v, k: 4, filter: { range: { field: "n", gte: 10, lt: 40 } }, ef: 16 }),
    ];
    for (const q of queries) {
      for (const shape of shapes) {
        const body = shape(q);
        const w = await call(writer.url, "POST", `${base}/search`, { token: reader, body });
        const e = await call(edge.url, "POST", `${base}/search`, { token: reader, body });
        assert.equal(e.status, 200, JSON.stringify(e.body));
        assert.deepEqual(e.body.tidemark, w.body.tidemark);
        assert.deepEqual(e.body.hits, w.body.hits);
        assert.equal(e.body.hits.length, body.k);
      }
    }
  });

  test("the head and log ranges pass through, immutable ranges cached", async () => {
    const head = await call(edge.url, "GET", `${base}/shards/1/head`, { token: reader });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("cache-control"), "no-store");
    const w = await call(writer.url, "GET", `${base}/shards/1/head`, { token: reader });
    assert.equal(head.body.head, w.body.head);
    assert.ok(w.body.head >= 2);
    const path = `${base}/shards/1/log?from=0&to=2`;
    const first = await call(edge.url, "GET", path, { token: reader });
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("x-tidemark-cache"), "miss");
    assert.match(first.headers.get("cache-control"), /immutable/);
    const direct = await call(writer.url, "GET", path, { token: reader });
    assert.deepEqual(first.body, direct.body);
    const second = await call(edge.url, "GET", path, { token: reader });
    assert.equal(second.headers.get("x-tidemark-cache"), "hit");
    assert.deepEqual(second.body, direct.body);
    const snap = await call(edge.url, "GET", `${base}/shards/1/snapshot`, { token: reader });
    assert.equal(snap.status, 200);
    assert.ok(snap.headers.get("x-tidemark-offset"));
  });
});

describe("freshness", () => {
  test("a write forwarded by the edge is visible at the edge right away", async () => {
    const token = await writeRecords(edge.url, [{ op: "put", id: "fw", fields: { title: "via edge" }, vector: vectors(5, 1, DIM)[0] }]);
    assert.ok(Object.keys(token.shards).length === 1);
    const e = await call(edge.url, "GET", `${base}/records/fw`, { token: reader });
    assert.equal(e.status, 200);
    assert.equal(e.body.fields.title, "via edge");
  });

  test("a write to the writer is visible at the edge within the staleness bound", async () => {
    await call(edge.url, "GET", `${base}/records/n3`, { token: reader });
    await writeRecords(writer.url, [{ op: "patch", id: "n3", fields: { title: "patched" } }]);
    const started = Date.now();
    let seen;
    while (Date.now() - started < 3000) {
      seen = await call(edge.url, "GET", `${base}/records/n3`, { token: reader });
      if (seen.body.fields?.title === "patched") break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(seen.body.fields.title, "patched");
    assert.ok(Date.now() - started < 2500, "visible within MAX_STALENESS_MS (1 s) plus a request");
  });

  test("read-your-writes: a consistency token makes the edge catch up first", async () => {
    for (let i = 0; i < 5; i++) {
      const token = await writeRecords(writer.url, [{ op: "put", id: `ryw${i}`, fields: { i }, vector: vectors(40 + i, 1, DIM)[0] }]);
      const e = await call(edge.url, "GET", `${base}/records/ryw${i}`, {
        token: reader,
        headers: { "x-tidemark-consistency": JSON.stringify(token) },
      });
      assert.equal(e.status, 200, JSON.stringify(e.body));
      assert.equal(e.body.fields.i, i);
      for (const [shard, offset] of Object.entries(token.shards)) {
        assert.ok(e.body.tidemark.shards[shard] >= offset);
      }
      const s = await call(edge.url, "POST", `${base}/search`, {
        token: reader,
        headers: { "x-tidemark-consistency": JSON.stringify(token) },
        body: { vector: vectors(40 + i, 1, DIM)[0], k: 1 },
      });
      assert.equal(s.body.hits[0].id, `ryw${i}`);
    }
  });

  test("a token the writer never reached answers 503 behind_consistency_token", async () => {
    const started = Date.now();
    const e = await call(edge.url, "GET", `${base}/records/n1`, {
      token: reader,
      headers: { "x-tidemark-consistency": JSON.stringify({ shards: { 0: 1e9 } }) },
    });
    assert.equal(e.status, 503);
    assert.equal(e.body.error.code, "behind_consistency_token");
    assert.ok(Date.now() - started >= 1400, "it waited for the deadline");
    const bad = await call(edge.url, "GET", `${base}/records/n1`, {
      token: reader,
      headers: { "x-tidemark-consistency": JSON.stringify({ shards: { 9: 1 } }) },
    });
    assert.equal(bad.status, 400);
  });
});

describe("invalidation", () => {
  let slow;
  before(async () => {
    // Staleness so long that only an invalidation can make the edge look.
    slow = await startEdge({ bindings: edgeBindings({ MAX_STALENESS_MS: "3600000" }), port: slowPort });
  });
  after(async () => slow?.dispose());

  test("the writer's signed webhook makes the edge catch up at once", async () => {
    const before = await call(slow.url, "GET", `${base}/records/n5`, { token: reader });
    assert.equal(before.status, 200);
    assert.equal(before.body.fields.title, "note 5");
    const started = Date.now();
    const token = await writeRecords(writer.url, [{ op: "patch", id: "n5", fields: { title: "invalidated" } }]);
    let seen;
    while (Date.now() - started < 3000) {
      seen = await call(slow.url, "GET", `${base}/records/n5`, { token: reader });
      if (seen.body.fields.title === "invalidated") break;
      await new Promise((r) => setTimeout(r, 10));
    }
    // With an hour of allowed staleness, only the push can have made it look.
    assert.equal(seen.body.fields.title, "invalidated");
    for (const [shard, offset] of Object.entries(token.shards)) {
      assert.ok(seen.body.tidemark.shards[shard] >= offset);
    }
  });

  test("an invalidation signed with the writer's key is applied, for a held shard only", async () => {
    const token = await writeRecords(writer.url, [{ op: "patch", id: "n5", fields: { title: "again" } }]);
    const [shard, head] = Object.entries(token.shards)[0];
    const frame = invalidationFrame({ namespace: NS, collection: COLL, shard: Number(shard), head }, writer.signingKey());
    const inv = await call(slow.url, "POST", "/v1/invalidate", {
      body: frame,
      headers: { "content-type": "application/x-tidemark" },
    });
    assert.equal(inv.status, 200, JSON.stringify(inv.body));
    assert.ok(inv.body.tidemark.shards[shard] >= head);
    const unheld = invalidationFrame({ namespace: NS, collection: "elsewhere", shard: 0, head: 3 }, writer.signingKey());
    const res = await call(slow.url, "POST", "/v1/invalidate", { body: unheld });
    assert.equal(res.status, 202);
    assert.equal(res.body.held, false);
  });

  test("unsigned, forged and malformed invalidations are refused", async () => {
    const fields = { namespace: NS, collection: COLL, shard: 0, head: 1e6 };
    const forger = generateKeyPairSync("ed25519").privateKey;
    const cases = [
      [stripSignature(invalidationFrame(fields, writer.signingKey())), 401],
      [invalidationFrame(fields, forger), 401],
      [invalidationFrame(fields), 401],
      [Buffer.from("not a frame"), 400],
    ];
    for (const [frame, status] of cases) {
      const res = await call(slow.url, "POST", "/v1/invalidate", { body: frame, headers: { "content-type": "application/x-tidemark" } });
      assert.equal(res.status, status, JSON.stringify(res.body));
    }
    const head = await call(slow.url, "GET", `${base}/shards/0/head`, { token: reader });
    assert.ok(head.body.head < 1e6);
  });
});

describe("restart", () => {
  test("a restarted edge bootstraps again and answers the same", async () => {
    const body = { vector: vectors(7, 1, DIM)[0], k: 10 };
    const before = await call(edge.url, "POST", `${base}/search`, { token: reader, body });
    await edge.dispose();
    edge = await startEdge({ bindings: edgeBindings(), port: edgePort });
    const mem = await call(edge.url, "GET", "/v1/edge/memory");
    assert.equal(mem.body.shards_loaded, 0, "a new isolate holds nothing");
    const afterRestart = await call(edge.url, "POST", `${base}/search`, { token: reader, body });
    assert.equal(afterRestart.status, 200);
    assert.deepEqual(afterRestart.body, before.body);
  });
});

describe("security", () => {
  test("writes without the write scope are refused at the edge and never reach the writer", async () => {
    const head = (await call(writer.url, "GET", base, { token: reader })).body.tidemark;
    const res = await call(edge.url, "POST", `${base}/records`, {
      token: reader,
      body: { ops: [{ op: "put", id: "sneaky", fields: {} }] },
    });
    assert.equal(res.status, 403);
    assert.equal(res.body.error.code, "forbidden");
    const none = await call(edge.url, "POST", `${base}/records`, { body: { ops: [] } });
    assert.equal(none.status, 401);
    assert.deepEqual((await call(writer.url, "GET", base, { token: reader })).body.tidemark, head);
  });

  test("a token for namespace A cannot read namespace B", async () => {
    const other = writer.token("beta", "read,write,admin");
    const made = await call(writer.url, "PUT", `/v1/ns/beta/collections/${COLL}`, {
      token: other,
      body: { dimension: DIM, metric: "cosine", shards: 1 },
    });
    assert.equal(made.status, 201);
    for (const path of [`/v1/ns/beta/collections/${COLL}`, `/v1/ns/beta/collections/${COLL}/records/n1`]) {
      const res = await call(edge.url, "GET", path, { token: reader });
      assert.equal(res.status, 403);
      assert.equal(res.body.error.code, "forbidden");
    }
    const search = await call(edge.url, "POST", `/v1/ns/beta/collections/${COLL}/search`, {
      token: reader,
      body: { vector: vectors(1, 1, DIM)[0] },
    });
    assert.equal(search.status, 403);
    const mine = await call(edge.url, "GET", `/v1/ns/beta/collections/${COLL}`, { token: other });
    assert.equal(mine.status, 200);
  });

  test("tokens signed by another issuer, or garbage, are unauthenticated", async () => {
    for (const token of ["garbage", reader.slice(0, -4) + "AAAA"]) {
      const res = await call(edge.url, "GET", base, { token });
      assert.equal(res.status, 401);
      assert.equal(res.body.error.code, "unauthenticated");
    }
  });

  test("bad input is a clear 4xx", async () => {
    const cases = [
      [{ vector: [1, 2, 3] }, 400, "invalid_vector"],
      [{ vector: new Array(DIM).fill(0) }, 400, "invalid_vector"],
      [{ vector: vectors(1, 1, DIM)[0], k: 0 }, 400, "invalid_request"],
      [{ vector: vectors(1, 1, DIM)[0], filter: { range: { field: "n" } } }, 400, "invalid_request"],
      ["{not json", 400, "invalid_json"],
      [{ vector: vectors(1, 1, DIM)[0], surprise: 1 }, 400, "invalid_json"],
    ];
    for (const [body, status, code] of cases) {
      const res = await call(edge.url, "POST", `${base}/search`, { token: reader, body });
      assert.equal(res.status, status, JSON.stringify(body));
      assert.equal(res.body.error.code, code, JSON.stringify(res.body));
    }
    const huge = await call(edge.url, "POST", `${base}/search`, { token: reader, body: "x".repeat(2 << 20) });
    assert.equal(huge.status, 413);
    const wrongMethod = await call(edge.url, "DELETE", `${base}/search`, { token: reader });
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.body.error.code, "method_not_allowed");
    const noShard = await call(edge.url, "GET", `${base}/shards/99/head`, { token: reader });
    assert.equal(noShard.status, 400);
    const noColl = await call(edge.url, "GET", `/v1/ns/${NS}/collections/missing`, { token: reader });
    assert.equal(noColl.status, 404);
  });
});

/** A proxy in front of the real writer that can tamper with its signed frames. */
async function tamperingProxy(target) {
  const state = { mode: "pass" };
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const headers = { ...req.headers };
    delete headers.host;
    const up = await fetch(target + req.url, {
      method: req.method,
      headers,
      body: chunks.length ? Buffer.concat(chunks) : undefined,
    });
    let body = Buffer.from(await up.arrayBuffer());
    const binary = (up.headers.get("content-type") ?? "").includes("x-tidemark");
    if (binary && state.mode === "flip") {
      body = Buffer.from(body);
      body[Math.floor(body.length / 2)] ^= 0x01;
    } else if (binary && state.mode === "unsigned") {
      body = stripSignature(body);
    }
    const out = {};
    for (const [k, v] of up.headers) if (k !== "content-length" && k !== "transfer-encoding") out[k] = v;
    if (binary && state.mode === "cut") {
      // The whole length announced, half of it sent, then the connection dropped.
      res.writeHead(up.status, { ...out, "content-length": String(body.length) });
      res.write(body.subarray(0, body.length >> 1), () => res.socket.destroy());
      return;
    }
    res.writeHead(up.status, out);
    res.end(body);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, state, close: () => new Promise((r) => server.close(r)) };
}

describe("forged data", () => {
  let proxy;
  let behind;
  before(async () => {
    proxy = await tamperingProxy(writer.url);
    behind = await startEdge({ bindings: edgeBindings({ WRITER_URL: proxy.url, CONSISTENCY_WAIT_MS: "300" }) });
  });
  after(async () => {
    await behind?.dispose();
    await proxy?.close();
  });

  test("a snapshot cut short of its announced length loads nothing", async () => {
    proxy.state.mode = "cut";
    const res = await call(behind.url, "GET", `${base}/records/n1`, { token: reader });
    assert.equal(res.status, 502, JSON.stringify(res.body));
    assert.equal(res.body.error.code, "upstream_unreachable");
    const mem = await call(behind.url, "GET", "/v1/edge/memory");
    assert.equal(mem.body.shards_loaded, 0);
  });

  test("forged or unsigned snapshots are refused and nothing is loaded", async () => {
    for (const mode of ["flip", "unsigned"]) {
      proxy.state.mode = mode;
      const res = await call(behind.url, "GET", `${base}/records/n1`, { token: reader });
      assert.equal(res.status, 502, `${mode}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, "untrusted_upstream");
      const mem = await call(behind.url, "GET", "/v1/edge/memory");
      assert.equal(mem.body.shards_loaded, 0);
    }
  });

  test("a forged log range is refused and the replica keeps its state", async () => {
    proxy.state.mode = "pass";
    const ok = await call(behind.url, "GET", `${base}/records/n2`, { token: reader });
    assert.equal(ok.status, 200);
    const tidemark = ok.body.tidemark;
    const token = await writeRecords(writer.url, [{ op: "patch", id: "n2", fields: { title: "forged?" } }]);
    for (const mode of ["flip", "unsigned"]) {
      proxy.state.mode = mode;
      const res = await call(behind.url, "GET", `${base}/records/n2`, {
        token: reader,
        headers: { "x-tidemark-consistency": JSON.stringify(token) },
      });
      assert.equal(res.status, 502, `${mode}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, "untrusted_upstream");
    }
    proxy.state.mode = "flip";
    const still = await call(behind.url, "GET", `${base}/records/n2`, { token: reader });
    assert.deepEqual(still.body.tidemark, tidemark);
    assert.notEqual(still.body.fields.title, "forged?");
    proxy.state.mode = "pass";
    const honest = await call(behind.url, "GET", `${base}/records/n2`, {
      token: reader,
      headers: { "x-tidemark-consistency": JSON.stringify(token) },
    });
    assert.equal(honest.body.fields.title, "forged?");
  });

  test("an edge configured with another writer key trusts nothing the writer sends", async () => {
    const wrong = await startEdge({
      bindings: edgeBindings({ WRITER_PUBLIC_KEY: writer.keys.token_issuer }),
    });
    try {
      const res = await call(wrong.url, "GET", `${base}/records/n1`, { token: reader });
      assert.equal(res.status, 502);
      assert.equal(res.body.error.code, "untrusted_upstream");
    } finally {
      await wrong.dispose();
    }
  });
});

describe("memory budget", () => {
  test("a shard past MEMORY_BUDGET_MB is refused with 507", async () => {
    const big = "big";
    const bigBase = `/v1/ns/${NS}/collections/${big}`;
    const made = await call(writer.url, "PUT", bigBase, { token: admin, body: { dimension: 384, metric: "dot", shards: 1 } });
    assert.equal(made.status, 201);
    const ops = vectors(3, 1000, 384).map((vector, i) => ({ op: "put", id: `b${i}`, fields: { i }, vector }));
    for (let i = 0; i < ops.length; i += 100) {
      const res = await call(writer.url, "POST", `${bigBase}/records`, { token: admin, body: { ops: ops.slice(i, i + 100) } });
      assert.equal(res.status, 200);
    }
    const tight = await startEdge({ bindings: edgeBindings({ MEMORY_BUDGET_MB: "1" }) });
    try {
      const res = await call(tight.url, "POST", `${bigBase}/search`, { token: reader, body: { vector: ops[0].vector, k: 3 } });
      assert.equal(res.status, 507, JSON.stringify(res.body));
      assert.equal(res.body.error.code, "memory_budget_exceeded");
      const small = await call(tight.url, "GET", `${base}/records/n1`, { token: reader });
      assert.equal(small.status, 200, "small shards still load within the budget");
    } finally {
      await tight.dispose();
    }
  });
});
