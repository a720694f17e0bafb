// The real regional writer (`tidemark-writer`, built by `cargo build -p
// tidemark-regional-writer`) as a process on 127.0.0.1 for the edge suites,
// plus what a test needs around it: tokens from its built-in issuer, its
// public keys, and invalidations signed with its own key file (the webhook
// the writer would send).
import { spawn, spawnSync } from "node:child_process";
import { createPrivateKey, sign } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export function writerBinary() {
  const target = process.env.CARGO_TARGET_DIR ?? join(repo, "target");
  // The bench runs a release writer (it seals 10k-record shards natively
  // inside a request); the suites use the debug build `cargo xtask test` made.
  const profile = process.env.TIDEMARK_WRITER_PROFILE ?? "debug";
  const bin = join(target, profile, "tidemark-writer");
  if (!existsSync(bin)) {
    throw new Error(`${bin} is missing: run \`cargo build -p tidemark-regional-writer\` (cargo xtask test does)`);
  }
  return bin;
}

/** Starts a writer on a free loopback port with a fresh data dir (or the
 * caller's `dataDir`, which `stop()` then leaves in place), pushing signed
 * invalidations to each of `webhooks`. */
export async function startWriter({ webhooks = [], dataDir: given } = {}) {
  const dataDir = given ?? mkdtempSync(join(tmpdir(), "tidemark-edge-e2e-"));
  const bin = writerBinary();
  const args = ["--listen", "127.0.0.1:0", "--data-dir", dataDir];
  for (const hook of webhooks) args.push("--webhook", hook);
  const child = spawn(bin, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" },
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`writer did not start: ${stderr}`)), 20000);
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`writer exited ${code}: ${stderr}`)));
  });
  const keys = await (await fetch(`${url}/v1/keys`)).json();
  return {
    url,
    dataDir,
    keys,
    token(namespace, scopes = "read,write,admin") {
      const r = spawnSync(bin, ["--data-dir", dataDir, "token", "--namespace", namespace, "--scopes", scopes], {
        encoding: "utf8",
      });
      if (r.status !== 0) throw new Error(`token: ${r.stderr}`);
      return r.stdout.trim();
    },
    /** The writer's signing key, from its data dir. */
    signingKey() {
      const seed = readFileSync(join(dataDir, "keys", "writer.key"), "utf8").trim();
      return seedKey(seed);
    },
    async stop() {
      child.kill("SIGKILL");
      await new Promise((r) => (child.exitCode !== null ? r() : child.on("exit", r)));
      if (!given) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** An Ed25519 private key from its 32-byte seed (hex). */
export function seedKey(seedHex) {
  const der = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), Buffer.from(seedHex, "hex")]);
  return createPrivateKey({ key: der, format: "der", type: "pkcs8" });
}

// postcard: unsigned integers are LEB128 varints, strings and byte strings
// are a varint length and the bytes, enum variants a varint index, Option a
// 0/1 tag. This is core's wire envelope (core/src/wire.rs), written out here
// so the suite can send frames the writer would send.
function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Buffer.from(out);
}
const str = (s) => Buffer.concat([varint(Buffer.byteLength(s)), Buffer.from(s)]);
const bytes = (b) => Buffer.concat([varint(b.length), b]);

// Version 1 frames: the signature covers the whole body, which node's crypto
// signs directly (version 2 signs a BLAKE3 digest, which node lacks). The
// edge reads both; the real writer's frames in these suites are version 2.
const FRAME_VERSION = 1;
const INVALIDATION = 4; // Message::Invalidation's variant index

/** A wire frame of Message::Invalidation; signed when `key` is given. */
export function invalidationFrame({ namespace, collection, shard, head }, key) {
  const body = Buffer.concat([varint(INVALIDATION), str(namespace), str(collection), varint(shard), varint(head)]);
  let signature = Buffer.from([0]);
  if (key) {
    const version = Buffer.alloc(2);
    version.writeUInt16LE(FRAME_VERSION);
    const signed = Buffer.concat([Buffer.from("tidemark/envelope\0"), version, body]);
    signature = Buffer.concat([Buffer.from([1]), bytes(sign(null, signed, key))]);
  }
  return Buffer.concat([varint(FRAME_VERSION), bytes(body), signature]);
}

/** The same frame without its signature (a signed frame ends with 1, 64, 64 bytes). */
export function stripSignature(frame) {
  return Buffer.concat([frame.subarray(0, frame.length - 66), Buffer.from([0])]);
}

/** A seeded xorshift32: a function returning numbers in [-0.5, 0.5). */
export function xorshift(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32 - 0.5;
  };
}

/** Deterministic vectors for the suites. */
export function vectors(seed, count, dim) {
  const next = xorshift(seed);
  return Array.from({ length: count }, () => Array.from({ length: dim }, next));
}

/** JSON over HTTP with a bearer token; resolves to `{ status, headers, body }`. */
export async function call(base, method, path, { token, body, headers = {} } = {}) {
  const init = { method, headers: { ...headers } };
  if (token) init.headers.authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["content-type"] ??= "application/json";
    init.body = typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body);
  }
  const res = await fetch(new URL(path, base), init);
  const type = res.headers.get("content-type") ?? "";
  const raw = Buffer.from(await res.arrayBuffer());
  const parsed = type.includes("json") ? JSON.parse(raw.toString("utf8")) : raw;
  return { status: res.status, headers: res.headers, body: parsed };
}
