// Headless Chromium as the suites and benchmarks run it: Debian's browser
// (or $TIDEMARK_CHROMIUM) driven by playwright-core, with nothing that
// reaches beyond 127.0.0.1 on its own (no sync, updates or QUIC probes).
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.TIDEMARK_CHROMIUM ?? "/usr/bin/chromium";

export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A browser whose contexts are fresh, in-memory profiles. */
export function launchChromium() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

/** A browser on its own on-disk profile in `dir` (IndexedDB written to disk, as for a real user). */
export function launchProfile(dir) {
  return chromium.launchPersistentContext(dir, { executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}
