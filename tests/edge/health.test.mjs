// The edge worker answers over HTTP in workerd, with core's SIMD kernels.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { startEdge } from "./harness.mjs";

let edge;
before(async () => {
  edge = await startEdge();
});
after(async () => {
  await edge?.dispose();
});

test("healthz reports the service and the SIMD128 kernels", async () => {
  assert.equal(edge.url.hostname, "127.0.0.1");
  const res = await fetch(new URL("/healthz", edge.url));
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.status, "ok");
  assert.equal(body.service, "tidemark-edge");
  assert.equal(body.kernels, "wasm32-simd128");
});

test("unknown routes answer a JSON 404 with a stable code", async () => {
  const res = await fetch(new URL("/no/such/route", edge.url));
  assert.equal(res.status, 404);
  const body = await res.json();
  assert.equal(body.error.code, "not_found");
});
