// The shared dataset (../shared/data/debian-minilm-20k) as the system suite
// uses it: the first rows as records, shaped like `tidemark-writer import
// --dataset` makes them, the sample queries, and exact nearest neighbours
// over exactly the rows loaded (cosine = dot: the vectors are unit length).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const DATASET = process.env.TIDEMARK_DATASET ?? join(repo, "..", "shared", "data", "debian-minilm-20k");

const floats = (file) => {
  const bytes = readFileSync(join(DATASET, file));
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
};
const lines = (file) =>
  readFileSync(join(DATASET, file), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line));

export function loadDataset(count) {
  const texts = lines("texts.jsonl").slice(0, count);
  const base = floats("base.f32");
  const dim = base.length / lines("texts.jsonl").length;
  const byId = new Map();
  texts.forEach((text, row) => {
    const name = text.split(":")[0].trim();
    // A later row with the same name replaces the earlier one, as a put does.
    byId.set(name, { id: name, fields: { name, text, row }, vector: base.subarray(row * dim, (row + 1) * dim) });
  });
  const records = [...byId.values()];
  const queryTexts = lines("queries.jsonl");
  const queryFloats = floats("queries.f32");
  const queries = queryTexts.map((_, i) => queryFloats.subarray(i * dim, (i + 1) * dim));

  /** Ids of the `k` records nearest to `vector`, best first. */
  function nearest(vector, k) {
    return records
      .map((r) => {
        let dot = 0;
        for (let i = 0; i < dim; i++) dot += r.vector[i] * vector[i];
        return { id: r.id, dot };
      })
      .sort((x, y) => y.dot - x.dot)
      .slice(0, k)
      .map((s) => s.id);
  }
  return { dim, records, byId, queries, queryTexts, nearest };
}
