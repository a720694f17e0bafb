// The system suite: the demo app, driven in headless Chromium by Playwright,
// over the real writer, the real edge worker in workerd and the SDK's npm
// package, all on 127.0.0.1. The app's SDK talks only to the edge.
//
// The edge is started with a staleness bound of ten minutes, so an edit can
// only reach another browser in time if the edge applies the writer's pushed
// invalidations: these tests fail if it stops doing so.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { launchChromium } from "./chromium.mjs";
import { freePort } from "../edge/harness.mjs";
import { call, startWriter } from "../edge/writer.mjs";
import { startStack } from "../../demo/stack.mjs";
import { DATASET, loadDataset, repo } from "./dataset.mjs";

const NS = "demo";
const COLL = "packages";
const RECORDS = 3000;
const SHARDS = 4;
const base = `/v1/ns/${NS}/collections/${COLL}`;
const shots = join(process.env.CARGO_TARGET_DIR ?? join(repo, "target"), "system");

/** How long a change may take to travel browser → edge → writer → edge → browser. */
const PROPAGATION_MS = 20_000;

let writer;
let stack;
let browser;
let data;
let reader;

before(async () => {
  data = loadDataset(RECORDS);
  const edgePort = await freePort();
  writer = await startWriter({ webhooks: [`http://127.0.0.1:${edgePort}/v1/invalidate`] });
  const admin = writer.token(NS, "read,write,admin");
  reader = writer.token(NS, "read");
  const created = await call(writer.url, "PUT", base, {
    token: admin,
    body: { dimension: data.dim, metric: "cosine", shards: SHARDS },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  for (let at = 0; at < data.records.length; at += 250) {
    const ops = data.records.slice(at, at + 250).map((r) => ({ op: "put", id: r.id, fields: r.fields, vector: Array.from(r.vector) }));
    const res = await call(writer.url, "POST", `${base}/records`, { token: admin, body: { ops } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
  }
  stack = await startStack({
    writer: writer.url,
    token: writer.token(NS, "read,write"),
    dataset: DATASET,
    namespace: NS,
    collection: COLL,
    edgePort,
    maxStalenessMs: "600000",
  });
  browser = await launchChromium();
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  await stack?.stop();
  await writer?.stop();
});

/** A fresh browser profile (its own IndexedDB) with the app open at `hash`, its replica loaded. */
async function openApp(hash) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (err) => problems.push(err.message));
  page.on("console", (msg) => msg.type() === "error" && problems.push(msg.text()));
  page.problems = problems;
  await page.goto(`${stack.app}/#${hash}`);
  await page.waitForFunction(
    (n) => document.body.dataset.ready === "true" && Number(document.getElementById("tidemark").dataset.value) >= n,
    data.records.length,
    { timeout: 60_000 },
  );
  await waitForState(page, "synced");
  return { context, page };
}

/** Two browsers with the app open at `hash`, handed to `body`, closed whatever happens. */
async function withTwoApps(hash, body) {
  const a = await openApp(hash);
  try {
    const b = await openApp(hash);
    try {
      await body(a, b);
    } finally {
      await b.context.close();
    }
  } finally {
    await a.context.close();
  }
}

function waitForState(page, state, timeout = PROPAGATION_MS) {
  return page.waitForSelector(`#sync[data-state="${state}"]`, { timeout });
}

function waitForPending(page, count) {
  return page.waitForFunction((n) => document.getElementById("pending").textContent === String(n), count, {
    timeout: PROPAGATION_MS,
  });
}

const cardIds = (page) => page.$$eval(".results .card", (cards) => cards.map((c) => c.dataset.id));
const noteOf = (page, id) => page.locator(`.card[data-id="${id}"] .note`);

async function writeNote(page, id, text) {
  await page.click(`.card[data-id="${id}"] .edit`);
  await page.fill(`.card[data-id="${id}"] .editor textarea`, text);
  await page.click(`.card[data-id="${id}"] .editor .save`);
}

async function writerRecord(id) {
  const res = await call(writer.url, "GET", `${base}/records/${encodeURIComponent(id)}`, { token: reader });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.fields;
}

describe("the demo app", () => {
  test("a sample query finds the nearest records, searched on the device", async () => {
    const query = 0;
    const { context, page } = await openApp(`q=${query}`);
    try {
      await page.waitForFunction(() => document.querySelectorAll(".results .card").length === 10);
      const shown = await cardIds(page);
      const expected = data.nearest(data.queries[query], 10);
      assert.equal(shown[0], expected[0], `top hit: shown ${shown}, expected ${expected}`);
      const overlap = shown.filter((id) => expected.includes(id)).length;
      assert.ok(overlap >= 9, `recall@10 ${overlap}/10: shown ${shown}, expected ${expected}`);
      const title = await page.textContent("#results-title");
      assert.ok(title.includes(data.queryTexts[query]), title);
      await page.screenshot({ path: join(shots, "search.png"), fullPage: false });

      // "More like this" on the second hit: it comes first, as itself.
      await page.click(`.card[data-id="${shown[1]}"] .similar`);
      await page.waitForFunction((id) => document.querySelector(".results .card")?.dataset.id === id, shown[1]);
      assert.deepEqual((await cardIds(page)).slice(0, 5), data.nearest(data.byId.get(shown[1]).vector, 5));
      assert.deepEqual(page.problems, []);
    } finally {
      await context.close();
    }
  });

  test("an edit in one browser appears in another through the writer and the edge", async () => {
    const id = data.records[17].id;
    await withTwoApps(`like=${id}`, async (a, b) => {
      const note = `checked on ${new Date().toISOString()}`;
      await writeNote(a.page, id, note);
      await noteOf(b.page, id).filter({ hasText: note }).waitFor({ timeout: PROPAGATION_MS });
      assert.equal((await writerRecord(id)).note, note);
      const atEdge = await call(stack.edge, "GET", `${base}/records/${encodeURIComponent(id)}`, { token: reader });
      assert.equal(atEdge.body.fields.note, note);
      await waitForState(a.page, "synced");
      assert.deepEqual([...a.page.problems, ...b.page.problems], []);
    });
  });

  test("an edit made offline syncs after reconnecting", async () => {
    const id = data.records[42].id;
    const { context, page } = await openApp(`like=${id}`);
    try {
      await context.setOffline(true);
      await waitForState(page, "offline");
      const note = "written on a plane";
      await writeNote(page, id, note);
      await noteOf(page, id).filter({ hasText: note }).waitFor();
      await waitForPending(page, 1);
      // Nothing left the browser.
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await writerRecord(id)).note, undefined);

      await context.setOffline(false);
      await waitForPending(page, 0);
      await waitForState(page, "synced");
      assert.equal((await writerRecord(id)).note, note);
    } finally {
      await context.close();
    }
  });

  test("two browsers edit one record offline (the app's toggle) and both edits survive", async () => {
    const id = data.records[99].id;
    await withTwoApps(`like=${id}`, async (a, b) => {
      for (const { page } of [a, b]) {
        await page.click("label.switch");
        await waitForState(page, "offline");
      }
      await writeNote(a.page, id, "note from A");
      await b.page.click(`.card[data-id="${id}"] .star`);
      await b.page.waitForSelector(`.card[data-id="${id}"] .star[aria-pressed="true"]`);
      await waitForPending(a.page, 1);
      await waitForPending(b.page, 1);
      assert.equal((await writerRecord(id)).note, undefined);

      for (const { page } of [a, b]) await page.click("label.switch");
      for (const { page } of [a, b]) {
        await noteOf(page, id).filter({ hasText: "note from A" }).waitFor({ timeout: PROPAGATION_MS });
        await page.waitForSelector(`.card[data-id="${id}"] .star[aria-pressed="true"]`, { timeout: PROPAGATION_MS });
      }
      const fields = await writerRecord(id);
      assert.equal(fields.note, "note from A");
      assert.equal(fields.starred, true);
      await b.page.screenshot({ path: join(shots, "merged.png") });
    });
  });
});
