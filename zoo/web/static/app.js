/* musiczoo listening room: plain JavaScript, no framework, nothing fetched from outside this server.
 *
 * State lives in `state`; every fetch that can be overtaken by a newer one (the track list while
 * typing, the selected track while clicking around, the similar list while moving the slider)
 * carries a token, and a stale answer is dropped instead of painted over a newer one. The "Other
 * versions" list (a library with a version model) is fetched beside the similar list, token and all. */
"use strict";

const PAGE_SIZE = 200;
const TOP_LABELS = 10;
/* Tableau 10: distinct, colour-blind-friendlier than a rainbow; labels beyond ten reuse them. */
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                 "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

const state = {
  library: null,
  colours: new Map(),
  list: { query: "", offset: 0, total: 0, loading: false, token: 0 },
  selected: null,       // {n, name, id} of the track in the centre
  model: 0,             // model used for the timeline and the picture
  query: null,          // what the similar list answers: {kind: "track", n, name} or {kind: "liked", tracks}
  liked: new Map(),     // n -> {n, id, name}, in the order liked
  tokens: { track: 0, similar: 0, versions: 0, upload: 0 },
};

/* ---- small helpers ---------------------------------------------------------------------------- */
const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

/** Create an element: el("span", {class: "x", title: "y"}, "text", child, ...). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") node.style.cssText = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

function detailOf(body) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
  return "";
}

/** fetch + JSON; a non-2xx answer throws an ApiError carrying the server's "detail". */
async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new ApiError(`cannot reach the server (${error.message})`, 0);
  }
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) throw new ApiError(detailOf(body) || `${response.status} ${response.statusText}`, response.status);
  return body;
}

const fmtP = (p) => Number(p).toFixed(3);
/** What the server ranks by unless told (Library.default_feature): combined, or versions for a library of version models only. */
const defaultFeature = (features) => (features.includes("combined") ? "combined" : features[0]);
const hasVersions = () => Boolean(state.library && state.library.features.includes("versions"));
const nameOf = (id) => id.split("/").pop();

function fmtTime(seconds) {
  if (!Number.isFinite(seconds)) return "–";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
}

function colourOf(label) {
  if (!state.colours.has(label)) state.colours.set(label, PALETTE[state.colours.size % PALETTE.length]);
  return state.colours.get(label);
}

function chip(label, p) {
  return el("span", { class: "chip", style: `--c: ${colourOf(label)}`, title: p === undefined ? label : `${label}: ${fmtP(p)}` },
            label, p === undefined ? null : el("span", { class: "chip-p" }, Number(p).toFixed(2)));
}

/* ---- the message banner ----------------------------------------------------------------------- */
function showMessage(text, kind = "error") {
  const box = $("#message");
  $("#message-text").textContent = text;
  box.className = kind;
  box.hidden = false;
}

function hideMessage() { $("#message").hidden = true; }

/* ---- library and track list ------------------------------------------------------------------- */
async function loadLibrary() {
  try {
    const info = await api("/api/library");
    state.library = info;
    for (const model of info.models) model.labels.forEach(colourOf);
    const models = info.models.map((m) => `${m.name} (${m.task})`).join(", ");
    $("#library-info").textContent = `${info.music_folder} · ${info.tracks.toLocaleString()} tracks · ${models}`;
    const initial = defaultFeature(info.features);
    $("#feature").replaceChildren(...info.features.map((f) => el("option", { value: f, selected: f === initial }, f)));
    $("#versions-panel").hidden = !info.features.includes("versions");
    if (info.models.length > 1) {
      $("#model-select").replaceChildren(...info.models.map((m, i) => el("option", { value: i }, m.name)));
      $("#model-choice").hidden = false;
    }
  } catch (error) {
    $("#library-info").textContent = "library unavailable";
    showMessage(`Cannot load the library: ${error.message}`);
  }
}

function resetList() {
  const list = state.list;
  list.query = $("#search").value.trim();
  list.offset = 0;
  list.total = 0;
  list.token += 1;
  list.loading = false;
  $("#track-list").replaceChildren();
  loadPage();
}

async function loadPage() {
  const list = state.list;
  if (list.loading) return;
  list.loading = true;
  const token = list.token;
  const more = $("#more");
  more.disabled = true;
  more.textContent = "Loading…";
  try {
    const params = new URLSearchParams({ q: list.query, offset: list.offset, limit: PAGE_SIZE });
    const page = await api(`/api/tracks?${params}`);
    if (token !== list.token) return;
    list.total = page.total;
    list.offset += page.tracks.length;
    $("#track-list").append(...page.tracks.map(trackRow));
    const shown = list.offset;
    $("#track-count").textContent = list.query
      ? `${page.total.toLocaleString()} tracks match “${list.query}”` + (shown < page.total ? ` (${shown} shown)` : "")
      : `${page.total.toLocaleString()} tracks` + (shown < page.total ? ` (${shown} shown)` : "");
    more.hidden = shown >= page.total;
  } catch (error) {
    if (token === list.token) showMessage(`Cannot list tracks: ${error.message}`);
  } finally {
    if (token === list.token) {
      list.loading = false;
      more.disabled = false;
      more.textContent = `Load ${PAGE_SIZE} more`;
    }
  }
}

function trackRow(track) {
  const labels = Object.entries(track.labels).sort((a, b) => b[1] - a[1]).slice(0, 3);
  const row = el("li", {
    class: "track" + (state.selected && state.selected.n === track.n ? " selected" : ""),
    role: "option", tabindex: "0", title: track.id, dataset: { n: track.n, id: track.id },
    onclick: () => selectTrack(track.n),
  },
  el("div", { class: "track-line" },
     el("span", { class: "track-name" }, track.name),
     el("span", { class: "track-duration mono" }, fmtTime(track.duration_s))),
  el("div", { class: "track-labels" }, labels.map(([label, p]) => chip(label, p))));
  row.addEventListener("keydown", (event) => {
    const next = event.key === "ArrowDown" ? row.nextElementSibling : event.key === "ArrowUp" ? row.previousElementSibling : null;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      selectTrack(track.n);
    } else if (next) {
      event.preventDefault();
      next.focus();
      selectTrack(Number(next.dataset.n));
    }
  });
  return row;
}

/* ---- the selected track ----------------------------------------------------------------------- */
async function selectTrack(n) {
  const token = ++state.tokens.track;
  for (const row of $$("#track-list .track")) {
    const on = Number(row.dataset.n) === n;
    row.classList.toggle("selected", on);
    row.setAttribute("aria-selected", on);
  }
  let track;
  try {
    track = await api(`/api/tracks/${n}`);
  } catch (error) {
    if (token === state.tokens.track) showMessage(`Cannot open track ${n}: ${error.message}`);
    return;
  }
  if (token !== state.tokens.track) return;
  state.selected = { n: track.n, id: track.id, name: track.name };
  history.replaceState(null, "", `#track=${n}`);

  $("#empty-state").hidden = true;
  $("#track-detail").hidden = false;
  $("#track-title").textContent = track.name;
  $("#track-title").title = track.id;
  $("#track-meta").textContent = `${track.id} · ${fmtTime(track.duration_s)} · #${track.n}`;
  const like = $("#like-current");
  like.dataset.n = track.n;
  like.dataset.id = track.id;
  updateLikeButton(like);

  const player = $("#player");
  player.src = `/api/tracks/${n}/audio`;
  $("#playhead").hidden = true;

  $("#bars").replaceChildren(...track.predictions.map((prediction) =>
    el("div", { class: "model-block" },
       el("h4", {}, prediction.model, " ", el("span", { class: "subtle" }, prediction.task)),
       bars(prediction.probabilities, TOP_LABELS, prediction.scale))));

  showModelViews(n, token);
  setQuery({ kind: "track", n: track.n, name: track.name });
  loadVersions();
}

function showModelViews(n, token) {
  const model = state.model;
  const image = $("#spectrogram");
  image.classList.remove("failed");
  image.src = `/api/tracks/${n}/spectrogram.png?model=${model}`;
  loadTimeline(n, model, token);
}

/** Horizontal bars for {label: p} (already highest first), the top TOP_LABELS of them; with a
 *  scale [lo, hi] (an emotion model), {target: value} in the model's order, each bar the value's
 *  place on the scale. */
function bars(probabilities, limit = TOP_LABELS, scale = null) {
  const entries = scale ? Object.entries(probabilities)
    : Object.entries(probabilities).sort((a, b) => b[1] - a[1]).slice(0, limit);
  const share = (p) => (scale ? (p - scale[0]) / (scale[1] - scale[0]) : p);
  const shown = (p) => (scale ? `${Number(p).toFixed(1)} of ${scale[0]}-${scale[1]}` : fmtP(p));
  return el("div", { class: "bars" }, entries.map(([label, p]) =>
    el("div", { class: "bar", title: `${label}: ${shown(p)}`, dataset: { label } },
       el("span", { class: "bar-label" }, label),
       el("span", { class: "bar-track" },
          el("span", { class: "bar-fill", style: `width: ${Math.max(0, Math.min(1, share(p))) * 100}%; background: ${colourOf(label)}` })),
       el("span", { class: "bar-value mono" }, shown(p)))));
}

async function loadTimeline(n, model, token) {
  const timeline = $("#timeline");
  timeline.replaceChildren(el("p", { class: "subtle small loading" }, "computing the segments…"));
  let answer;
  try {
    answer = await api(`/api/tracks/${n}/segments?model=${model}`);
  } catch (error) {
    if (token === state.tokens.track) timeline.replaceChildren(el("p", { class: "inline-error" }, `No timeline: ${error.message}`));
    return;
  }
  if (token !== state.tokens.track || model !== state.model) return;
  if (!answer.segments.length) {
    timeline.replaceChildren(el("p", { class: "subtle small" }, "no segments (silent or too short)"));
    return;
  }
  const scale = (state.library.models[model] || {}).scale;
  if (scale) {  // an emotion model: each segment's values, in the model's order
    timeline.replaceChildren(...answer.segments.map((segment) => {
      const values = Object.entries(segment.labels).map(([name, v]) => `${name} ${Number(v).toFixed(1)}`).join(" · ");
      return el("button", {
        type: "button", class: "segment", title: `${fmtTime(segment.start_s)}–${fmtTime(segment.end_s)}\n${values}`,
        dataset: { start: segment.start_s, end: segment.end_s, label: values },
        onclick: () => { const player = $("#player"); player.currentTime = segment.start_s; player.play().catch(() => {}); },
      }, el("span", { class: "segment-label" }, values));
    }));
    return;
  }
  timeline.replaceChildren(...answer.segments.map((segment) => {
    const ranked = Object.entries(segment.labels).sort((a, b) => b[1] - a[1]);
    const [top, p] = ranked[0] || ["?", 0];
    const tooltip = [`${fmtTime(segment.start_s)}–${fmtTime(segment.end_s)}`,
                     ...ranked.map(([label, q]) => `${label}: ${fmtP(q)}`)].join("\n");
    return el("button", {
      type: "button", class: "segment", title: tooltip, style: `--c: ${colourOf(top)}`,
      dataset: { start: segment.start_s, end: segment.end_s, label: top },
      onclick: () => { const player = $("#player"); player.currentTime = segment.start_s; player.play().catch(() => {}); },
    }, el("span", { class: "segment-label" }, top), el("span", { class: "segment-p mono" }, Number(p).toFixed(2)));
  }));
}

/** Follow playback on the timeline and the picture. */
function onTimeUpdate() {
  const player = $("#player");
  const t = player.currentTime;
  let current = null;
  for (const cell of $$("#timeline .segment")) if (Number(cell.dataset.start) <= t) current = cell;
  for (const cell of $$("#timeline .segment")) cell.classList.toggle("playing", cell === current && !player.paused);
  const covered = Math.min(player.duration || 0, 30);
  const playhead = $("#playhead");
  if (covered > 0 && t <= covered && (t > 0 || !player.paused)) {
    playhead.hidden = false;
    playhead.style.left = `${(t / covered) * 100}%`;
  } else {
    playhead.hidden = true;
  }
}

/* ---- similar tracks --------------------------------------------------------------------------- */
function queryOptions() {
  let k = Math.round(Number($("#k").value));
  if (!Number.isFinite(k) || k < 1) k = 1;
  if (k > 100) k = 100;
  $("#k").value = k;
  const options = { k, feature: $("#feature").value || defaultFeature(state.library ? state.library.features : ["combined"]) };
  if ($("#diversify").checked) options.diversify = Number($("#lambda").value);
  return options;
}

function describeOptions(options) {
  return `${options.feature}` + (options.diversify === undefined ? "" : ` · diversified, λ ${options.diversify.toFixed(2)}`);
}

function setQuery(query) {
  state.query = query;
  refreshSimilar();
}

async function refreshSimilar() {
  const query = state.query;
  if (!query) return;
  const token = ++state.tokens.similar;
  const options = queryOptions();
  const heading = $("#similar-heading");
  const status = $("#similar-status");
  if (query.kind === "track") {
    heading.textContent = `Similar to ${query.name}`;
  } else {
    heading.textContent = `Recommended for ${query.tracks.length} liked track${query.tracks.length === 1 ? "" : "s"}`;
  }
  status.textContent = "searching…";
  const started = performance.now();
  let answer;
  try {
    if (query.kind === "track") {
      const params = new URLSearchParams(options);
      answer = await api(`/api/tracks/${query.n}/similar?${params}`);
    } else {
      answer = await api("/api/like", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ tracks: query.tracks, ...options }),
      });
    }
  } catch (error) {
    if (token !== state.tokens.similar) return;
    status.textContent = "";
    $("#similar").replaceChildren();
    delete $("#similar").dataset.query;
    showMessage(`Cannot find similar tracks: ${error.message}`);
    return;
  }
  if (token !== state.tokens.similar) return;
  const ms = Math.round(performance.now() - started);
  status.textContent = `${answer.matches.length} matches · ${describeOptions(options)} · ${ms} ms`;
  renderMatches($("#similar"), answer.matches);
  $("#similar").dataset.query = query.kind;  // what the list now shows: "track" or "liked"
}

/** The other performances of the selected track's work, when the library has a version model. */
async function loadVersions() {
  const track = state.selected;
  if (!hasVersions() || !track) return;
  const token = ++state.tokens.versions;
  const { k } = queryOptions();
  $("#versions-heading").textContent = `Other versions of ${track.name}`;
  $("#versions-status").textContent = "searching…";
  const started = performance.now();
  let answer;
  try {
    answer = await api(`/api/tracks/${track.n}/versions?${new URLSearchParams({ k })}`);
  } catch (error) {
    if (token !== state.tokens.versions) return;
    $("#versions-status").textContent = "";
    $("#versions").replaceChildren();
    delete $("#versions").dataset.track;
    showMessage(`Cannot find other versions: ${error.message}`);
    return;
  }
  if (token !== state.tokens.versions) return;
  $("#versions-status").textContent = `${answer.matches.length} nearest performances · ${Math.round(performance.now() - started)} ms`;
  renderMatches($("#versions"), answer.matches);
  $("#versions").dataset.track = track.n;  // whose versions the list now shows
}

function renderMatches(list, matches) {
  if (!matches.length) {
    list.replaceChildren(el("li", { class: "subtle small" }, "no matches"));
    return;
  }
  list.replaceChildren(...matches.map((match) => {
    const name = nameOf(match.id);
    const shared = match.shared && match.shared.length
      ? match.shared.map((label) => chip(label))
      : [el("span", { class: "subtle small" }, "no shared labels")];
    return el("li", { class: "match", dataset: { n: match.n, id: match.id } },
      el("div", { class: "match-line" },
         el("span", { class: "rank mono" }, match.rank),
         el("button", { type: "button", class: "match-name link", title: `${match.id}\nopen this track`,
                        onclick: () => selectTrack(match.n) }, name),
         el("span", { class: "similarity mono", title: "cosine similarity" }, fmtP(match.similarity)),
         likeButton(match.n, match.id)),
      el("div", { class: "match-shared" }, el("span", { class: "subtle small" }, "shares"), shared),
      el("audio", { controls: true, preload: "none", src: `/api/tracks/${match.n}/audio` }));
  }));
}

/* ---- likes ------------------------------------------------------------------------------------ */
function likeButton(n, id) {
  const button = el("button", { type: "button", class: "like-button compact", dataset: { n, id },
                                onclick: () => toggleLike(n, id) });
  updateLikeButton(button);
  return button;
}

function updateLikeButton(button) {
  const on = state.liked.has(Number(button.dataset.n));
  const compact = button.classList.contains("compact");
  button.setAttribute("aria-pressed", on);
  button.classList.toggle("on", on);
  button.textContent = on ? (compact ? "♥" : "♥ Liked") : (compact ? "♡" : "♡ Like");
  button.title = on ? "Liked: click to unlike" : "Like this track";
}

function toggleLike(n, id) {
  n = Number(n);
  if (state.liked.has(n)) state.liked.delete(n);
  else state.liked.set(n, { n, id, name: nameOf(id) });
  renderLiked();
}

function renderLiked() {
  for (const button of $$(".like-button")) updateLikeButton(button);
  const liked = Array.from(state.liked.values());
  $("#liked-count").textContent = liked.length;
  $("#liked-empty").hidden = liked.length > 0;
  $("#liked").replaceChildren(...liked.map((track) =>
    el("li", { class: "liked-track", dataset: { n: track.n, id: track.id } },
       el("button", { type: "button", class: "link", title: track.id, onclick: () => selectTrack(track.n) }, track.name),
       el("button", { type: "button", class: "icon-button", "aria-label": `Unlike ${track.name}`, title: "unlike",
                      onclick: () => toggleLike(track.n, track.id) }, "×"))));
  $("#recommend-liked").disabled = liked.length === 0;
  $("#recommend-liked").textContent = liked.length ? `Recommend for liked (${liked.length})` : "Recommend for liked";
  $("#clear-liked").disabled = liked.length === 0;
}

/* ---- upload (a file from outside the library) ------------------------------------------------- */
async function upload(file) {
  if (!file) return;
  const token = ++state.tokens.upload;
  const status = $("#upload-status");
  const zone = $("#drop-zone");
  status.textContent = `Analysing ${file.name}…`;
  zone.classList.add("busy");
  const form = new FormData();
  form.append("file", file, file.name);
  const options = queryOptions();
  const params = new URLSearchParams(options);
  let answer;
  try {
    answer = await api(`/api/upload?${params}`, { method: "POST", body: form });
  } catch (error) {
    if (token !== state.tokens.upload) return;
    status.textContent = "";
    showMessage(`Upload failed: ${error.message}`);
    return;
  } finally {
    if (token === state.tokens.upload) {
      zone.classList.remove("busy");
      $("#upload-input").value = "";  // the same file can be chosen again
    }
  }
  if (token !== state.tokens.upload) return;
  if ($("#message").classList.contains("error") && $("#message-text").textContent.startsWith("Upload failed")) hideMessage();
  status.textContent = "";
  $("#upload-title").textContent = `${answer.name} · ${fmtTime(answer.duration_s)}`;
  $("#upload-bars").replaceChildren(bars(answer.labels));
  $("#upload-summary").textContent = `${answer.matches.length} matches · ${describeOptions(options)}`;
  renderMatches($("#upload-matches"), answer.matches);
  $("#upload-result").hidden = false;
}

/* ---- wiring ----------------------------------------------------------------------------------- */
function wire() {
  let debounce = null;
  $("#search").addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(resetList, 250);
  });
  $("#search").addEventListener("keydown", (event) => {
    if (event.key === "Enter") { clearTimeout(debounce); resetList(); }
    if (event.key === "ArrowDown") { const first = $("#track-list .track"); if (first) { event.preventDefault(); first.focus(); } }
  });
  $("#more").addEventListener("click", loadPage);
  if ("IntersectionObserver" in window) {  // infinite scroll: the "more" button loads itself when reached
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && !$("#more").hidden) loadPage();
    }, { root: $("#library-pane") }).observe($("#more"));
  }

  $("#message-close").addEventListener("click", hideMessage);
  $("#like-current").addEventListener("click", (event) => toggleLike(event.currentTarget.dataset.n, event.currentTarget.dataset.id));
  $("#recommend-liked").addEventListener("click", () => {
    if (state.liked.size) setQuery({ kind: "liked", tracks: Array.from(state.liked.keys()) });
  });
  $("#clear-liked").addEventListener("click", () => { state.liked.clear(); renderLiked(); });

  $("#feature").addEventListener("change", refreshSimilar);
  $("#k").addEventListener("change", () => { refreshSimilar(); loadVersions(); });
  $("#diversify").addEventListener("change", () => {
    $("#lambda").disabled = !$("#diversify").checked;
    refreshSimilar();
  });
  $("#lambda").addEventListener("input", () => { $("#lambda-value").textContent = Number($("#lambda").value).toFixed(2); });
  $("#lambda").addEventListener("change", refreshSimilar);
  $("#model-select").addEventListener("change", () => {
    state.model = Number($("#model-select").value);
    if (state.selected) showModelViews(state.selected.n, state.tokens.track);
  });

  const player = $("#player");
  player.addEventListener("timeupdate", onTimeUpdate);
  player.addEventListener("pause", onTimeUpdate);
  player.addEventListener("loadedmetadata", () => {
    if (state.selected) $("#track-meta").dataset.duration = player.duration;
  });
  player.addEventListener("error", () => {
    if (player.getAttribute("src")) showMessage(`Cannot play ${state.selected ? state.selected.name : "this track"} in this browser`);
  });
  const image = $("#spectrogram");
  image.addEventListener("error", () => { if (image.getAttribute("src")) image.classList.add("failed"); });

  /* One sound at a time: starting a player pauses the others. */
  document.addEventListener("play", (event) => {
    for (const audio of $$("audio")) if (audio !== event.target) audio.pause();
  }, true);

  $("#upload-input").addEventListener("change", (event) => upload(event.target.files[0]));
  const zone = $("#drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    upload(event.dataTransfer.files[0]);
  });
  /* A file dropped beside the zone must not make the browser navigate away from the page. */
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
}

async function start() {
  wire();
  renderLiked();
  await loadLibrary();
  resetList();
  const fromHash = /^#track=(\d+)$/.exec(location.hash);
  if (fromHash) selectTrack(Number(fromHash[1]));
}

start();
