// The demo app: 20k Debian package descriptions with real embeddings,
// searched by meaning on this device through the Tidemark SDK, annotated
// with notes and stars that keep working offline and sync through the edge.
//
// Everything the page reads comes from the SDK's local replica (IndexedDB);
// the network is only the SDK's sync loop, which talks to the edge.
import init, { Tidemark } from "/pkg/tidemark.js";

const $ = (id) => document.getElementById(id);
const K = 10;
const STARRED_LIMIT = 200;

/** The "network" the SDK sees: the browser's, unless the toggle cuts it. */
let networkUp = true;
const appFetch = (url, options) =>
  networkUp ? fetch(url, options) : Promise.reject(new TypeError("offline: the app's network toggle is off"));

const config = await (await fetch("/config.json")).json();
const [queries, db] = await Promise.all([loadQueries(), openDatabase()]);
const packages = await db.collection(config.collection);

/** What the results list shows, so remote changes can refresh it. */
let view = null;
const shardProgress = new Map();

$("edge-url").textContent = config.edge;
wireSearch();
wireToggle();
db.on("change", onChange);
db.on("sync", onSyncProgress);
db.on("status", renderStatus);
db.on("error", (e) => log(`Sync error: ${e.message}`, "error"));
db.on("rejected", (e) => log(`The writer refused ${e.id}: ${e.message}`, "error"));
setInterval(() => renderStatus(db.status()), 500);
renderStatus(db.status());
route();
window.addEventListener("hashchange", route);
document.body.dataset.ready = "true";

async function openDatabase() {
  await init();
  return Tidemark.open({
    url: config.edge,
    namespace: config.namespace,
    token: config.token,
    // Pinned with the app rather than learned from the network it guards.
    writerKey: config.writerKey,
    persist: "indexeddb",
    pollIntervalMs: 1000,
    fetch: appFetch,
  });
}

/** The dataset's sample queries: texts and their embeddings (same model as the records). */
async function loadQueries() {
  const [texts, floats] = await Promise.all([
    fetch("/data/queries.jsonl").then((r) => r.text()),
    fetch("/data/queries.f32").then((r) => r.arrayBuffer()),
  ]);
  const list = texts.split("\n").filter(Boolean).map((line) => JSON.parse(line));
  const all = new Float32Array(floats);
  const dim = all.length / list.length;
  return list.map((text, i) => ({ text, vector: all.subarray(i * dim, (i + 1) * dim) }));
}

// ---- search ---------------------------------------------------------------

function wireSearch() {
  const datalist = $("queries");
  for (const q of queries) {
    const option = document.createElement("option");
    option.value = q.text;
    datalist.append(option);
  }
  const suggestions = $("suggestions");
  for (const i of [0, 2, 7, 11]) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip";
    chip.textContent = queries[i].text;
    chip.onclick = () => (location.hash = `q=${i}`);
    suggestions.append(chip);
  }
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("q").value.trim();
    if (!text) return;
    const index = queries.findIndex((q) => q.text === text);
    if (index >= 0) return void (location.hash = `q=${index}`);
    if (recordOf(text)) return void (location.hash = `like=${encodeURIComponent(text)}`);
    // Free text: the closest sample query by shared words (there is no
    // embedding model in the page; the samples' embeddings ship with the data).
    const words = text.toLowerCase().split(/\W+/).filter((w) => w.length > 2);
    const scored = queries
      .map((q, i) => ({ i, hits: words.filter((w) => q.text.toLowerCase().includes(w)).length }))
      .filter((s) => s.hits > 0)
      .sort((a, b) => b.hits - a.hits);
    if (scored.length) return void (location.hash = `q=${scored[0].i}`);
    showMessage(
      `No sample query or package named “${text}”. The page has no embedding model: pick one of the ${queries.length} sample queries, or type a package name (e.g. libgmp-dev) to find similar ones.`,
    );
  });
  $("exact").addEventListener("change", () => view && runView(view));
  $("show-starred").addEventListener("click", () => (location.hash = "starred"));
}

/** The URL says what to show: `#q=<sample>`, `#like=<id>` or `#starred`. */
function route() {
  const hash = decodeURIComponent(location.hash.slice(1));
  if (hash === "starred") return runView({ kind: "starred" });
  if (hash.startsWith("like=")) return runView({ kind: "like", id: hash.slice(5) });
  const index = hash.startsWith("q=") ? Number(hash.slice(2)) : 0;
  runView({ kind: "query", index: queries[index] ? index : 0 });
}

function runView(next) {
  view = next;
  view.unresolved = false;
  hideMessage();
  let vector;
  let title;
  let options = { k: K, exact: $("exact").checked };
  if (next.kind === "query") {
    ({ vector } = queries[next.index]);
    title = `“${queries[next.index].text}”`;
    $("q").value = queries[next.index].text;
  } else if (next.kind === "like") {
    const record = recordOf(next.id);
    if (!record?.vector) {
      // Shown again once the replica has it (see onChange and renderStatus).
      next.unresolved = true;
      renderResults([], `More like ${next.id}`, "");
      return showMessage(`${next.id} is not on this device yet${db.status().syncing ? " (still syncing)" : ""}.`);
    }
    vector = record.vector;
    title = `More like ${next.id}`;
    $("q").value = next.id;
  } else {
    // Any valid vector: the filter decides, the exact scan sees every record.
    vector = queries[0].vector;
    options = { k: STARRED_LIMIT, exact: true, filter: { eq: { field: "starred", value: true } } };
    title = "Starred packages";
  }
  const started = performance.now();
  let hits;
  try {
    hits = packages.search(vector, options);
  } catch (err) {
    return showMessage(`Search failed: ${err.message ?? err}`);
  }
  const ms = performance.now() - started;
  if (next.kind === "starred") hits.sort((a, b) => a.id.localeCompare(b.id));
  const how = options.exact ? "exact scan" : "HNSW";
  renderResults(hits, title, `${hits.length} results · ${ms.toFixed(1)} ms on this device · ${how}`);
  if (!hits.length && next.kind === "starred") showMessage("Nothing starred yet: press ☆ on a result.");
}

function renderResults(hits, title, meta) {
  $("results-title").textContent = title;
  $("results-meta").textContent = meta;
  const list = $("results");
  list.replaceChildren(...hits.map((hit) => card(hit)));
}

function card(hit) {
  const node = $("card").content.firstElementChild.cloneNode(true);
  node.dataset.id = hit.id;
  node.querySelector(".pkg").textContent = hit.id;
  const showScore = view?.kind !== "starred";
  node.querySelector(".score").hidden = !showScore;
  node.querySelector(".score-num").textContent = hit.score.toFixed(3);
  node.querySelector(".score-bar span").style.width = `${Math.max(0, Math.min(1, hit.score)) * 100}%`;
  fillFields(node, hit.fields);

  node.querySelector(".similar").onclick = () => (location.hash = `like=${encodeURIComponent(hit.id)}`);
  node.querySelector(".star").onclick = async () => {
    const starred = node.querySelector(".star").getAttribute("aria-pressed") !== "true";
    await write(node, hit.id, { starred: starred ? true : null });
  };
  const editor = node.querySelector(".editor");
  const textarea = editor.querySelector("textarea");
  node.querySelector(".edit").onclick = () => {
    editor.hidden = !editor.hidden;
    if (!editor.hidden) {
      textarea.value = recordOf(hit.id)?.fields.note ?? "";
      textarea.focus();
    }
  };
  editor.querySelector(".cancel").onclick = () => (editor.hidden = true);
  editor.querySelector(".remove").onclick = async () => {
    editor.hidden = true;
    await write(node, hit.id, { note: null });
  };
  editor.addEventListener("submit", async (event) => {
    event.preventDefault();
    editor.hidden = true;
    const note = textarea.value.trim();
    await write(node, hit.id, { note: note || null });
  });
  return node;
}

/** A record's fields into its card: description, note, star. */
function fillFields(node, fields) {
  const text = String(fields.text ?? "");
  const colon = text.indexOf(":");
  node.querySelector(".desc").textContent = colon >= 0 ? text.slice(colon + 1).trim() : text;
  const note = node.querySelector(".note");
  note.hidden = !fields.note;
  note.textContent = fields.note ?? "";
  node.querySelector(".edit").textContent = fields.note ? "Edit note" : "Add note";
  const star = node.querySelector(".star");
  star.setAttribute("aria-pressed", String(fields.starred === true));
  star.textContent = fields.starred === true ? "★" : "☆";
}

/** The record as this device has it, or undefined (also for ids the SDK refuses). */
function recordOf(id) {
  try {
    return packages.get(id);
  } catch {
    return undefined;
  }
}

/** A local write: durable on this device when it resolves, synced later. */
async function write(node, id, patch) {
  try {
    await packages.update(id, patch);
    const saved = node.querySelector(".saved");
    saved.textContent = db.status().online ? "Saved · syncing" : "Saved on this device · will sync when online";
    setTimeout(() => (saved.textContent = ""), 4000);
    log(`Saved ${id} on this device`);
  } catch (err) {
    showMessage(`Could not save ${id}: ${err.message ?? err}`);
  }
}

// ---- changes, sync, status ----------------------------------------------

function onChange(event) {
  if (event.collection !== config.collection) return;
  if (event.source === "remote") {
    const shown = event.ids.length > 3 ? `${event.ids.slice(0, 3).join(", ")} and ${event.ids.length - 3} more` : event.ids.join(", ");
    if (event.ids.length <= 50) log(`Synced from the edge: ${shown}`, "remote");
  }
  // Cards on screen show the record as it is now (edits do not move a
  // record's vector, so the order stays).
  for (const id of event.ids) {
    const node = document.querySelector(`.card[data-id="${CSS.escape(id)}"]`);
    const record = node && recordOf(id);
    if (record) fillFields(node, record.fields);
  }
  if (view?.kind === "starred" || view?.unresolved) runView(view);
}

function onSyncProgress(event) {
  if (event.collection !== config.collection || event.phase !== "bootstrap") return;
  shardProgress.set(event.shard, event);
  let done = 0;
  let total = 0;
  for (const p of shardProgress.values()) {
    done += p.done;
    total += p.total;
  }
  const percent = total ? Math.floor((100 * done) / total) : 0;
  $("bootstrap").hidden = false;
  $("bootstrap-fill").style.width = `${percent}%`;
  $("bootstrap-text").textContent =
    `Loading the local replica from the edge… ${percent}% (${done.toLocaleString()} of ${total.toLocaleString()} entries)`;
}

/** The first load is over when the sync loop rests: snapshots, then the log after them. */
function bootstrapEnded(status) {
  $("bootstrap").hidden = true;
  const total = Object.values(status.tidemark[config.collection] ?? {}).reduce((a, b) => a + b, 0);
  log(`Replica loaded: ${total.toLocaleString()} entries`);
  if (view) runView(view);
}

function renderStatus(status) {
  const shards = status.tidemark[config.collection] ?? {};
  const total = Object.values(shards).reduce((a, b) => a + b, 0);
  let state;
  let text;
  if (!status.online) [state, text] = ["offline", "Offline"];
  else if (status.lastError) [state, text] = ["error", "Sync error"];
  else if (status.syncing) [state, text] = ["syncing", "Syncing…"];
  else if (status.pending) [state, text] = ["pending", "Waiting to sync"];
  else [state, text] = ["synced", "Synced"];
  if (!status.syncing && !$("bootstrap").hidden) bootstrapEnded(status);
  if (state === "synced" && view?.unresolved) runView(view);
  $("sync").dataset.state = state;
  $("sync-state").textContent = text;
  $("tidemark").textContent = total.toLocaleString();
  $("tidemark").dataset.value = total;
  $("pending").textContent = status.pending;
  $("pending-2").textContent = status.pending;
  $("net").textContent = status.online ? "online" : "offline";
  $("last-error").textContent = status.lastError ? `${status.lastError.code}: ${status.lastError.message}` : "none";
  $("shards").replaceChildren(
    ...Object.entries(shards)
      .sort(([a], [b]) => Number(a) - Number(b))
      .map(([shard, offset]) => {
        const row = document.createElement("tr");
        row.innerHTML = "<td></td><td></td>";
        row.cells[0].textContent = shard;
        row.cells[1].textContent = offset.toLocaleString();
        return row;
      }),
  );
  const toggle = $("online-toggle");
  toggle.checked = networkUp && navigator.onLine;
  $("online-label").textContent = toggle.checked ? "Online" : "Offline";
}

/** The toggle cuts the SDK's network and tells its sync loop, as the browser would. */
function wireToggle() {
  $("online-toggle").addEventListener("change", (event) => {
    networkUp = event.target.checked;
    window.dispatchEvent(new Event(networkUp ? "online" : "offline"));
    log(networkUp ? "Back online: syncing" : "Working offline: edits stay on this device");
    renderStatus(db.status());
  });
  window.addEventListener("online", () => renderStatus(db.status()));
  window.addEventListener("offline", () => renderStatus(db.status()));
}

function log(text, kind = "") {
  const item = document.createElement("li");
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const span = document.createElement("span");
  span.className = kind;
  span.textContent = text;
  item.append(time, span);
  const list = $("activity");
  list.prepend(item);
  while (list.children.length > 50) list.lastElementChild.remove();
}

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = false;
}

function hideMessage() {
  $("message").hidden = true;
}
