// A Chrome DevTools CPU profile (`Profiler.stop`'s `profile`) summed up:
// self time per function, and inclusive time of the SDK's steps, found by
// the names in the wasm module's name section.

/** Steps of a bootstrap, as (label, name patterns); a sample counts once per step. */
const STEPS = [
  ["read a snapshot as it streams (SnapshotStream::push)", [/SnapshotStream.*push/]],
  ["  of which BLAKE3 (the body's digest)", [/blake3/]],
  ["  of which fields JSON (serde_json)", [/serde_json/]],
  ["  of which the index block (IndexLoader::push)", [/IndexLoader.*push/]],
  ["verify the signature (SnapshotStream::finish)", [/SnapshotStream.*finish/]],
  ["index: the sealed segment takes the block (IndexLoader::finish)", [/IndexLoader.*finish/]],
  ["replica: load a snapshot (Replica::load_snapshot)", [/Replica.*load_snapshot|ReplicaShard.*load_snapshot|replica::.*load_snapshot/]],
  ["  of which Automerge document loads", [/automerge::.*load|Automerge::load|AutoCommit.*load/]],
  ["verify + decode a log range (decode_verified)", [/decode_verified/]],
  ["encode for IndexedDB (take_persist)", [/take_persist/]],
  ["search", [/LocalCollection.*search|ShardIndex.*search/]],
  ["events to JS (serde_wasm / to_js)", [/convert::to_js|serde_wasm_bindgen/]],
  ["garbage collector", [/^\(garbage collector\)$/]],
];

export function summarize(profile, { top = 12 } = {}) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const name = (n) => n.callFrame.functionName || `(anonymous ${n.callFrame.url.split("/").pop()}:${n.callFrame.lineNumber})`;
  const self = new Map();
  const steps = new Map(STEPS.map(([label]) => [label, 0]));
  let total = 0;
  let idle = 0;
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const leaf = byId.get(id);
    const leafName = name(leaf);
    if (leafName === "(idle)") {
      idle += ms;
      return;
    }
    total += ms;
    self.set(leafName, (self.get(leafName) ?? 0) + ms);
    const stack = [];
    for (let n = id; n !== undefined; n = parent.get(n)) stack.push(name(byId.get(n)));
    for (const [label, patterns] of STEPS) {
      if (stack.some((f) => patterns.some((p) => p.test(f)))) steps.set(label, steps.get(label) + ms);
    }
  });
  const selfTop = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  return { busyMs: total, idleMs: idle, steps: [...steps.entries()], selfTop };
}
