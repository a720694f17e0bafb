// The demo app's static server: the app itself (demo/app), the SDK's npm
// package as built by `cargo xtask build sdk` (browser-sdk/pkg, under
// /pkg/), the dataset's query texts and their embeddings (under /data/,
// which is how the app searches by meaning without a model in the browser),
// and /config.json: where the edge is and the app's token.
//
// A real app gets its token from its own sign-in; the demo mints one with
// the writer's development issuer and hands it to the page.
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createServer } from "node:http";
import { dirname, extname, join, normalize, resolve as absolute, sep } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".jsonl": "application/jsonl; charset=utf-8",
  ".f32": "application/octet-stream",
  ".svg": "image/svg+xml",
  ".ts": "text/plain; charset=utf-8",
};

/** The dataset files the page may fetch: query texts and their embeddings. */
const DATA_FILES = new Set(["queries.jsonl", "queries.f32"]);

/**
 * Serves the app on `host:port` (port 0: any free one); `app` is the folder
 * of the page (default demo/app; the SDK benchmark serves bench/sdk).
 * `config` is what the page reads from /config.json:
 * `{ edge, writer, namespace, collection, token, writerKey }`.
 * Resolves to `{ url, close }`.
 */
export async function serveApp({
  config,
  dataset,
  host = "127.0.0.1",
  port = 0,
  pkg = join(repo, "browser-sdk", "pkg"),
  app = join(repo, "demo", "app"),
}) {
  // Absolute and normalized, so the containment check below compares like with like.
  const roots = { app: absolute(app), pkg: absolute(pkg), data: absolute(dataset) };
  const server = createServer(async (req, res) => {
    try {
      const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
      if (req.method !== "GET" && req.method !== "HEAD") {
        return send(res, 405, "text/plain", "GET only");
      }
      if (path === "/config.json") {
        return send(res, 200, TYPES[".json"], JSON.stringify(config), { "cache-control": "no-store" });
      }
      const file = fileFor(roots, path);
      if (!file) return send(res, 404, "text/plain", `no such file: ${path}`);
      const info = await stat(file).catch(() => null);
      if (!info?.isFile()) return send(res, 404, "text/plain", `no such file: ${path}`);
      res.writeHead(200, {
        "content-type": TYPES[extname(file)] ?? "application/octet-stream",
        "content-length": info.size,
        // The app and SDK change between builds; the dataset does not.
        "cache-control": path.startsWith("/data/") ? "public, max-age=86400" : "no-cache",
      });
      if (req.method === "HEAD") return res.end();
      createReadStream(file).pipe(res);
    } catch (err) {
      send(res, 400, "text/plain", String(err?.message ?? err));
    }
  });
  await new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(port, host, ok);
  });
  const url = `http://${host}:${server.address().port}`;
  return { url, close: () => new Promise((ok) => server.close(ok)) };
}

/** The file behind a URL path, or null; never outside the served folders. */
function fileFor(roots, path) {
  let root;
  let rest;
  if (path === "/" || path === "/index.html") {
    [root, rest] = [roots.app, "index.html"];
  } else if (path.startsWith("/pkg/")) {
    [root, rest] = [roots.pkg, path.slice("/pkg/".length)];
  } else if (path.startsWith("/data/")) {
    rest = path.slice("/data/".length);
    if (!DATA_FILES.has(rest)) return null;
    root = roots.data;
  } else {
    [root, rest] = [roots.app, path.slice(1)];
  }
  const file = normalize(join(root, rest));
  return file.startsWith(root + sep) ? file : null;
}

function send(res, status, type, body, headers = {}) {
  res.writeHead(status, { "content-type": type, ...headers });
  res.end(body);
}
