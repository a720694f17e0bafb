// Checks a running demo the way a person would: opens the app in headless
// Chromium, waits until its replica is loaded and the first search has
// results, saves a screenshot, and prints what the page shows.
//
//   node demo/screenshot.mjs [URL] [OUT.png]     (default http://127.0.0.1:8080, demo.png)
import { launchChromium } from "../tests/system/chromium.mjs";

const url = process.argv[2] ?? "http://127.0.0.1:8080";
const out = process.argv[3] ?? "demo.png";

const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on("pageerror", (err) => errors.push(err.message));
  const started = Date.now();
  await page.goto(url);
  await page.waitForSelector('#sync[data-state="synced"]', { timeout: 180_000 });
  await page.waitForFunction(() => document.querySelectorAll(".results .card").length > 0, null, { timeout: 30_000 });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  await page.screenshot({ path: out });
  const summary = await page.evaluate(() => ({
    title: document.getElementById("results-title").textContent,
    meta: document.getElementById("results-meta").textContent,
    tidemark: document.getElementById("tidemark").textContent,
    hits: [...document.querySelectorAll(".results .card")].map((c) => c.dataset.id),
  }));
  console.log(`synced and searchable after ${seconds} s; tidemark ${summary.tidemark}`);
  console.log(`${summary.title}: ${summary.meta}`);
  console.log(`hits: ${summary.hits.join(", ")}`);
  console.log(`screenshot: ${out}`);
  if (errors.length) {
    console.error(`page errors: ${errors.join("; ")}`);
    process.exitCode = 1;
  }
} finally {
  await browser.close();
}
