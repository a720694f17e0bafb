// One API, two hosts: the same checks of docs/api.md run against the real
// writer and against the edge worker in workerd. A client must be able to
// point at either and see the same answers, the same errors and the same
// codes; the edge adds only where it read (its tidemark).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startEdge } from "./harness.mjs";
import { call, startWriter, vectors } from "./writer.mjs";

const NS = "conform";
const COLL = "docs";
const DIM = 16;
const base = `/v1/ns/${NS}/collections/${COLL}`;

let writer;
let edge;
const tokens = {};
const hosts = { writer: () => writer.url, edge: () => edge.url };

before(async () => {
  writer = await startWriter();
  tokens.admin = writer.token(NS, "read,write,admin");
  tokens.write = writer.token(NS, "read,write");
  tokens.read = writer.token(NS, "read");
  tokens.other = writer.token("someone-else", "read,write");
  const created = await call(writer.url, "PUT", base, {
    token: tokens.admin,
    body: { dimension: DIM, metric: "cosine", shards: 2 },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const ops = vectors(7, 40, DIM).map((vector, i) => ({
    op: "put",
    id: `d${i}`,
    fields: { title: `doc ${i}`, kind: i % 3 ? "memo" : "spec", size: i },
    vector,
  }));
  const res = await call(writer.url, "POST", `${base}/records`, { token: tokens.admin, body: { ops } });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  edge = await startEdge({
    bindings: {
      WRITER_URL: writer.url,
      WRITER_PUBLIC_KEY: writer.keys.writer,
      TOKEN_PUBLIC_KEY: writer.keys.token_issuer,
    },
  });
});

after(async () => {
  await edge?.dispose();
  await writer?.stop();
});

/** Asserts the documented error shape: `{"error": {"code", "message"}}`. */
function assertError(res, status, code) {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(res.body?.error?.code, code, JSON.stringify(res.body));
  assert.equal(typeof res.body.error.message, "string");
}

const query = vectors(99, 1, DIM)[0];

for (const [name, url] of Object.entries(hosts)) {
  describe(`the API at the ${name}`, () => {
    test("describes the collection with its tidemark", async () => {
      const res = await call(url(), "GET", base, { token: tokens.read });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.dimension, DIM);
      assert.equal(res.body.metric, "cosine");
      assert.equal(res.body.shards, 2);
      const total = Object.values(res.body.tidemark.shards).reduce((a, b) => a + b, 0);
      assert.ok(total >= 40, JSON.stringify(res.body.tidemark));
      assert.deepEqual(JSON.parse(res.headers.get("x-tidemark")), res.body.tidemark);
    });

    test("gets a record, and 404 not_found for one that is not there", async () => {
      const res = await call(url(), "GET", `${base}/records/d5`, { token: tokens.read });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.id, "d5");
      assert.deepEqual(res.body.fields, { title: "doc 5", kind: "memo", size: 5 });
      assert.equal(res.body.vector.length, DIM);
      assertError(await call(url(), "GET", `${base}/records/nope`, { token: tokens.read }), 404, "not_found");
    });

    test("searches with k, a filter and exact mode", async () => {
      const res = await call(url(), "POST", `${base}/search`, {
        token: tokens.read,
        body: { vector: query, k: 5, exact: true, filter: { eq: { field: "kind", value: "spec" } } },
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.hits.length, 5);
      for (const hit of res.body.hits) assert.equal(hit.fields.kind, "spec");
      const scores = res.body.hits.map((h) => h.score);
      assert.deepEqual(scores, [...scores].sort((a, b) => b - a));
    });

    test("reports a shard's head", async () => {
      const res = await call(url(), "GET", `${base}/shards/0/head`, { token: tokens.read });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(typeof res.body.head, "number");
      assert.equal(res.headers.get("cache-control"), "no-store");
    });

    test("serves an immutable log range with long cache headers", async () => {
      const res = await call(url(), "GET", `${base}/shards/0/log?from=0&to=5`, { token: tokens.read });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "application/x-tidemark");
      assert.match(res.headers.get("cache-control"), /immutable/);
    });

    test("writes, then reads its own write with the consistency token", async () => {
      const id = `written-at-${name}`;
      const w = await call(url(), "POST", `${base}/records`, {
        token: tokens.write,
        body: { ops: [{ op: "put", id, fields: { title: name }, vector: query }] },
      });
      assert.equal(w.status, 200, JSON.stringify(w.body));
      const r = await call(url(), "GET", `${base}/records/${id}`, {
        token: tokens.read,
        headers: { "x-tidemark-consistency": JSON.stringify(w.body.token) },
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body.fields, { title: name });
    });

    test("refuses bad input with the documented codes", async () => {
      const search = (body) => call(url(), "POST", `${base}/search`, { token: tokens.read, body });
      assertError(await search({ vector: [1, 2, 3], k: 3 }), 400, "invalid_vector");
      assertError(await search({ vector: new Array(DIM).fill(0), k: 3 }), 400, "invalid_vector");
      assertError(await search({ vector: query, k: 0 }), 400, "invalid_request");
      assertError(await search("{not json"), 400, "invalid_json");
      assertError(await call(url(), "GET", `${base}/shards/9/head`, { token: tokens.read }), 400, "invalid_request");
    });

    test("refuses callers without a token, scope or namespace", async () => {
      assertError(await call(url(), "GET", `${base}/records/d1`), 401, "unauthenticated");
      assertError(await call(url(), "GET", `${base}/records/d1`, { token: "not.a.jwt" }), 401, "unauthenticated");
      assertError(await call(url(), "GET", `${base}/records/d1`, { token: tokens.other }), 403, "forbidden");
      const write = { ops: [{ op: "patch", id: "d1", fields: { title: "x" } }] };
      assertError(await call(url(), "POST", `${base}/records`, { token: tokens.read, body: write }), 403, "forbidden");
      assertError(await call(url(), "POST", `${base}/records`, { token: tokens.other, body: write }), 403, "forbidden");
    });

    test("answers 404 for unknown collections and routes", async () => {
      assertError(await call(url(), "GET", `/v1/ns/${NS}/collections/missing`, { token: tokens.read }), 404, "not_found");
      assertError(await call(url(), "GET", "/v1/nothing-here", { token: tokens.read }), 404, "not_found");
    });

    test("lets browsers on other origins call it", async () => {
      const preflight = await fetch(new URL(`${base}/search`, url()), {
        method: "OPTIONS",
        headers: {
          origin: "http://app.example",
          "access-control-request-method": "POST",
          "access-control-request-headers": "authorization, content-type",
        },
      });
      assert.ok(preflight.status === 200 || preflight.status === 204, `preflight ${preflight.status}`);
      assert.equal(preflight.headers.get("access-control-allow-origin"), "*");
      assert.match(preflight.headers.get("access-control-allow-headers") ?? "", /authorization/i);
      const res = await call(url(), "GET", `${base}/records/d1`, { token: tokens.read, headers: { origin: "http://app.example" } });
      assert.equal(res.headers.get("access-control-allow-origin"), "*");
      assert.match(res.headers.get("access-control-expose-headers") ?? "", /x-tidemark/i);
    });
  });
}

describe("the writer and the edge agree", () => {
  test("on records and search results at the same tidemark", async () => {
    const w = await call(writer.url, "POST", `${base}/search`, { token: tokens.read, body: { vector: query, k: 10, exact: true } });
    // A consistency token at the writer's tidemark makes the edge read at least there.
    const e = await call(edge.url, "POST", `${base}/search`, {
      token: tokens.read,
      body: { vector: query, k: 10, exact: true },
      headers: { "x-tidemark-consistency": JSON.stringify(w.body.tidemark) },
    });
    assert.equal(e.status, 200, JSON.stringify(e.body));
    assert.deepEqual(e.body.tidemark, w.body.tidemark);
    assert.deepEqual(e.body.hits, w.body.hits);
    for (const id of ["d0", "d13", "d39"]) {
      const [wr, er] = await Promise.all(
        [writer.url, edge.url].map((h) => call(h, "GET", `${base}/records/${id}`, { token: tokens.read })),
      );
      const { tidemark: edgeMark, ...edgeRecord } = er.body;
      const { tidemark: writerMark, ...writerRecord } = wr.body;
      assert.deepEqual(edgeRecord, writerRecord);
      // Each names the shards it read: the edge only the record's, the
      // writer may name more; where both name a shard they agree.
      for (const [shard, offset] of Object.entries(edgeMark.shards)) {
        assert.equal(offset, writerMark.shards[shard], `shard ${shard}`);
      }
    }
  });
});
