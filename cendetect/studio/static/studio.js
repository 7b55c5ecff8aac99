// cendetect studio: the page. Plain JavaScript, no library, nothing loaded from elsewhere.
// Coordinates: image pixels (pixel (x, y) covers [x, x+1) x [y, y+1)); the canvas element is
// sized in image pixels and shown through one CSS transform (zoom, pan).
"use strict";

const $ = (sel) => document.querySelector(sel);
const COLOURS = ["#ff3b30", "#0a84ff", "#ffcc00", "#bf5af2", "#64d2ff", "#ff9f0a", "#30d158"];
const S = {
  classes: [], threshold: 0.3, images: [], byName: new Map(), tiles: new Map(),
  filter: "all", current: null, info: null, tool: "select", label: 0, brush: 12,
  selected: null, view: { s: 1, x: 0, y: 0 }, after: false, seq: 0, events: null,
  busy: false, shownFolder: null, shownOutput: null,
};

// ---- helpers -------------------------------------------------------------------------------

function enc(name) { return name.split("/").map(encodeURIComponent).join("/"); }

function toast(text, error = false) {
  const t = $("#toast");
  t.textContent = text;
  t.className = error ? "error" : "";
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, error ? 6000 : 2500);
}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `${r.status} ${r.statusText}`);
  return data;
}

function visible(inst) { return inst.kept && (inst.always || inst.score > S.threshold); }

function counts(summary) {
  const c = S.classes.map(() => 0);
  for (const [label, score, always] of summary.inst) {
    if (always || score > S.threshold) c[label] += 1;
  }
  return c;
}

// ---- progress and events -------------------------------------------------------------------

function showProgress(p) {
  $("#progress").max = Math.max(p.total, 1);
  $("#progress").value = p.done;
  let text = p.total ? `${p.done} / ${p.total} images` : "no images";
  if (p.rate > 0 && p.done < p.total) text += `, ${p.rate.toFixed(2)} img/s`;
  if (p.eta != null && p.running) text += `, ~${Math.ceil(p.eta)} s left`;
  if (!p.folder) text = "no folder open";
  else if (p.done >= p.total) text += " — done";
  else if (p.cancelled) text += " — cancelled";
  if (p.error) text += ` (${p.error})`;
  $("#progress-text").textContent = text;
  $("#cancel").hidden = !(p.running && !p.cancelled);
  $("#resume").hidden = !(p.cancelled && p.done < p.total);
  // the fields show the open folder when it changes, and are left alone otherwise: a path
  // being typed (focused or not) is never overwritten by the next progress event
  if (p.folder !== S.shownFolder || p.output !== S.shownOutput) {
    S.shownFolder = p.folder;
    S.shownOutput = p.output;
    if (p.folder) $("#folder").value = p.folder;
    if (p.output) $("#output").value = p.output;
  }
}

function listen() {
  if (S.events) S.events.close();
  S.events = new EventSource(`api/events?seq=${S.seq}`);
  S.events.addEventListener("progress", (e) => {
    const p = JSON.parse(e.data);
    S.seq = p.seq;
    if (p.classes.length && p.classes.join() !== S.classes.join()) setClasses(p.classes);
    showProgress(p);
  });
  S.events.addEventListener("image", (e) => {
    const sm = JSON.parse(e.data);
    const old = S.byName.get(sm.name);
    if (!old) return;
    Object.assign(old, sm);
    updateTile(old);
    if (S.current === sm.name && (!S.info || S.info.version !== sm.version)) loadImage(sm.name, false);
  });
}

async function loadState() {
  const st = await api("api/state");
  S.threshold = st.threshold;
  S.seq = st.seq;
  $("#threshold").value = S.threshold;
  $("#threshold-value").textContent = S.threshold.toFixed(2);
  setClasses(st.classes, false);
  S.images = st.images;
  S.byName = new Map(S.images.map((s) => [s.name, s]));
  buildGrid();
  showProgress(st.progress);
  listen();
}

function setClasses(classes, refresh = true) {
  S.classes = classes;
  const sel = $("#label");
  sel.innerHTML = "";
  S.classes.forEach((c, i) => sel.add(new Option(`${i + 1} ${c}`, i)));
  if (refresh) { for (const sm of S.images) updateTile(sm); }
}

// ---- the grid ------------------------------------------------------------------------------

// Thumbnails are asked for only when their tile comes near the screen (one screen ahead),
// in the grid's order: a folder of thousands asks for the first screenful first.
const thumbObserver = new IntersectionObserver((entries) => {
  for (const e of entries) {
    if (!e.isIntersecting) continue;
    const img = e.target.querySelector("img");
    if (!img.getAttribute("src")) img.src = `api/thumb/${enc(e.target.dataset.name)}`;
    thumbObserver.unobserve(e.target);
  }
}, { root: $("#grid"), rootMargin: "100% 0px" });

// The grid is built in slices: the first screenful at once, the rest a slice per frame, so a
// folder of thousands shows its first thumbnails without waiting for the last tile.
let gridBuild = 0;

function buildGrid() {
  const grid = $("#grid");
  thumbObserver.disconnect();
  grid.textContent = "";
  S.tiles = new Map();
  const proto = document.createElement("figure");
  proto.className = "tile";
  proto.innerHTML = '<div class="thumb"><img alt=""></div>' +
    '<figcaption><div class="name"></div><div class="counts"></div></figcaption>';
  const tile = (sm) => {
    const fig = proto.cloneNode(true);
    fig.dataset.name = sm.name;
    const label = fig.querySelector(".name");
    label.textContent = sm.name;
    label.title = sm.name;
    S.tiles.set(sm.name, fig);
    updateTile(sm, fig);
    thumbObserver.observe(fig);
    return fig;
  };
  const build = ++gridBuild;
  const images = S.images;
  let next = 0;
  // a first screenful at once; then, when the page is idle, as many tiles as the idle period
  // allows (50 at a time), so that thumbnails and clicks are never held up by the grid
  const more = (count, deadline) => {
    if (build !== gridBuild) return;  // another folder was opened meanwhile
    const frag = document.createDocumentFragment();
    do {
      const stop = Math.min(next + count, images.length);
      for (; next < stop; next += 1) frag.appendChild(tile(images[next]));
    } while (deadline && next < images.length && deadline.timeRemaining() > 2);
    grid.appendChild(frag);
    if (next < images.length) requestIdleCallback((d) => more(50, d), { timeout: 1000 });
    else applyFilter();
  };
  more(60, null);
}

function updateTile(sm, fig = S.tiles.get(sm.name)) {
  if (!fig) return;
  const c = counts(sm);
  let text;
  if (sm.status === "pending") text = "waiting for detection…";
  else if (sm.status === "broken") text = `broken: ${sm.reason}`;
  else text = S.classes.map((n, i) => `${n} ${c[i]}`).join(" · ");
  fig.querySelector(".counts").textContent = text;
  fig.classList.toggle("broken", sm.status === "broken");
  fig.classList.toggle("edited", !!sm.edited);
  fig.classList.toggle("confirmed", !!sm.confirmed);
  fig.classList.toggle("hidden", !matches(sm));
}

function matches(sm) {
  const n = counts(sm).reduce((a, b) => a + b, 0);
  switch (S.filter) {
    case "regions": return sm.status === "done" && n > 0;
    case "none": return sm.status === "done" && n === 0;
    case "edited": return !!sm.edited;
    case "low": return sm.inst.some(([, score, always]) => !always && score > S.threshold && score < 0.6);
    case "unconfirmed": return sm.status === "done" && !sm.confirmed;
    case "broken": return sm.status === "broken";
    default: return true;
  }
}

function applyFilter() {
  let shown = 0;
  for (const sm of S.images) {
    const fig = S.tiles.get(sm.name);
    if (!fig) continue;  // not built yet
    const ok = matches(sm);
    fig.classList.toggle("hidden", !ok);
    if (ok) shown += 1;
  }
  $("#grid-count").textContent = `${shown} of ${S.images.length}`;
}

// ---- the image view ------------------------------------------------------------------------

function shownNames() { return S.images.filter(matches).map((s) => s.name); }

async function openImage(name) {
  S.current = name;
  S.selected = null;
  S.info = null;
  $("#grid-view").hidden = true;
  $("#image-view").hidden = false;
  $("#image-name").textContent = name;
  await loadImage(name, true);
}

async function loadImage(name, fresh) {
  let info;
  try {
    info = await api(`api/image/${enc(name)}`);
  } catch (err) { toast(err.message, true); return; }
  if (S.current !== name) return;
  const note = $("#stage-note");
  const picture = $("#picture");
  if (info.status !== "done") {
    note.hidden = false;
    note.textContent = info.status === "broken" ? `broken: ${info.reason}` : "detecting…";
    S.info = info;
    if (info.status === "broken") picture.removeAttribute("src");
    drawOverlay();
    return;
  }
  note.hidden = true;
  const first = !S.info || S.info.name !== name || S.info.status !== "done";
  S.info = info;
  if (first || fresh) {
    const c = $("#canvas");
    c.style.width = `${info.width}px`;
    c.style.height = `${info.height}px`;
    picture.width = info.width;
    picture.height = info.height;
    const svg = $("#overlay");
    svg.setAttribute("width", info.width);
    svg.setAttribute("height", info.height);
    svg.setAttribute("viewBox", `0 0 ${info.width} ${info.height}`);
    fit();
  }
  showPicture();
  drawOverlay();
}

function showPicture() {
  const info = S.info;
  if (!info || info.status !== "done") return;
  const src = S.after ? `api/result/${enc(info.name)}?v=${info.version}&t=${S.threshold}`
    : `api/view/${enc(info.name)}`;
  const picture = $("#picture");
  if (picture.getAttribute("src") !== src) picture.src = src;
  $("#stage").classList.toggle("after", S.after);
  $("#after").classList.toggle("on", S.after);
}

function fit() {
  const st = $("#stage").getBoundingClientRect();
  const info = S.info;
  if (!info || !info.width) return;
  const s = Math.min(st.width / info.width, st.height / info.height);
  S.view = { s, x: (st.width - info.width * s) / 2, y: (st.height - info.height * s) / 2 };
  applyView();
}

function applyView() {
  const v = S.view;
  $("#canvas").style.transform = `translate(${v.x}px, ${v.y}px) scale(${v.s})`;
}

function toImage(ev) {
  const r = $("#stage").getBoundingClientRect();
  return [(ev.clientX - r.left - S.view.x) / S.view.s, (ev.clientY - r.top - S.view.y) / S.view.s];
}

const SVGNS = "http://www.w3.org/2000/svg";

function drawOverlay() {
  const svg = $("#overlay");
  svg.textContent = "";
  const list = $("#instances");
  list.textContent = "";
  const info = S.info;
  $("#undo").disabled = !(info && info.can_undo);
  $("#redo").disabled = !(info && info.can_redo);
  $("#confirm").classList.toggle("on", !!(info && info.confirmed));
  if (!info || info.status !== "done") return;
  for (const inst of info.instances) {
    inst.always = inst.source === "user" || inst.edited;
    const colour = COLOURS[inst.label % COLOURS.length];
    const path = document.createElementNS(SVGNS, "path");
    path.setAttribute("d", inst.polys.map((p) => {
      let d = `M${p[0]} ${p[1]}`;
      for (let i = 2; i < p.length; i += 2) d += `L${p[i]} ${p[i + 1]}`;
      return `${d}Z`;
    }).join(""));
    path.setAttribute("class", "inst");
    path.setAttribute("stroke", colour);
    path.setAttribute("fill", colour);
    path.dataset.id = inst.id;
    path.classList.toggle("dropped", !inst.kept);
    path.classList.toggle("below", inst.kept && !visible(inst));
    path.classList.toggle("selected", inst.id === S.selected);
    svg.appendChild(path);
    const text = document.createElementNS(SVGNS, "text");
    const fs = 12 / S.view.s;
    text.setAttribute("x", inst.box[0]);
    text.setAttribute("y", Math.max(inst.box[1] - 3 / S.view.s, fs));
    text.setAttribute("fill", colour);
    text.setAttribute("font-size", fs);
    text.style.strokeWidth = `${3 / S.view.s}px`;
    text.textContent = `${S.classes[inst.label]} ${inst.source === "user" ? "added" : inst.score.toFixed(2)}`;
    if (!visible(inst) && inst.kept) text.style.display = "none";
    svg.appendChild(text);
    const li = document.createElement("li");
    li.textContent = `${S.classes[inst.label]} ${inst.source === "user" ? "(added)" : inst.score.toFixed(3)}${inst.edited ? " ✎" : ""}`;
    li.dataset.id = inst.id;
    li.classList.toggle("dropped", !inst.kept);
    li.classList.toggle("below", inst.kept && !visible(inst));
    li.classList.toggle("selected", inst.id === S.selected);
    li.addEventListener("click", () => { select(inst.id); });
    list.appendChild(li);
  }
}

function select(id) {
  S.selected = id;
  const inst = S.info && S.info.instances.find((i) => i.id === id);
  if (inst) { S.label = inst.label; $("#label").value = inst.label; }
  drawOverlay();
}

async function edit(op, args = {}) {
  if (!S.info || S.info.status !== "done" || S.busy) return null;
  S.busy = true;
  try {
    const info = await api("api/edit", { name: S.info.name, op, ...args });
    if (S.current === info.name) {
      S.info = info;
      const sm = S.byName.get(info.name);
      if (sm) {
        sm.inst = info.instances.filter((i) => i.kept).map((i) => [i.label, i.score, i.source === "user" || i.edited ? 1 : 0]);
        sm.edited = info.edited; sm.confirmed = info.confirmed; sm.version = info.version;
        updateTile(sm);
      }
      showPicture();
      drawOverlay();
    }
    return info;
  } catch (err) {
    toast(err.message, true);
    return null;
  } finally { S.busy = false; }
}

// ---- pointer tools -------------------------------------------------------------------------

let drag = null;

function stageDown(ev) {
  if (!S.info || S.info.status !== "done" || S.after) { startPan(ev); return; }
  const pan = ev.button === 1 || (ev.button === 0 && keysDown.has(" "));
  if (pan) { startPan(ev); return; }
  if (ev.button !== 0) return;
  const [x, y] = toImage(ev);
  if (S.tool === "select") {
    const target = ev.target.closest && ev.target.closest("path.inst");
    if (target) {
      const id = Number(target.dataset.id);
      S.selected = id;
      edit("toggle", { id });
      return;
    }
    if (S.selected !== null) select(null);  // a click beside every region clears the selection
    startPan(ev);
    return;
  }
  if (S.tool === "brush" || S.tool === "eraser") {
    const line = document.createElementNS(SVGNS, "polyline");
    line.setAttribute("class", `preview${S.tool === "eraser" ? " erase" : ""}`);
    line.setAttribute("stroke-width", 2 * S.brush);
    $("#overlay").appendChild(line);
    drag = { kind: "stroke", points: [[x, y]], line };
    line.setAttribute("points", `${x},${y} ${x + 0.01},${y}`);
  } else if (S.tool === "box") {
    const rect = document.createElementNS(SVGNS, "rect");
    rect.setAttribute("class", "preview");
    $("#overlay").appendChild(rect);
    drag = { kind: "box", x0: x, y0: y, x, y, rect };
  } else if (S.tool === "seed") {
    edit("seed", { x: Math.floor(x), y: Math.floor(y), label: S.label }).then((info) => {
      if (info) { const added = info.instances[info.instances.length - 1]; if (added) select(added.id); }
    });
    return;
  }
  $("#stage").setPointerCapture(ev.pointerId);
}

function startPan(ev) {
  drag = { kind: "pan", x: ev.clientX, y: ev.clientY, vx: S.view.x, vy: S.view.y };
  $("#stage").setPointerCapture(ev.pointerId);
}

function stageMove(ev) {
  if (!drag) return;
  if (drag.kind === "pan") {
    S.view.x = drag.vx + ev.clientX - drag.x;
    S.view.y = drag.vy + ev.clientY - drag.y;
    applyView();
    return;
  }
  const [x, y] = toImage(ev);
  if (drag.kind === "stroke") {
    drag.points.push([x, y]);
    drag.line.setAttribute("points", drag.points.map((p) => p.join(",")).join(" "));
  } else if (drag.kind === "box") {
    drag.x = x; drag.y = y;
    drag.rect.setAttribute("x", Math.min(drag.x0, x));
    drag.rect.setAttribute("y", Math.min(drag.y0, y));
    drag.rect.setAttribute("width", Math.abs(x - drag.x0));
    drag.rect.setAttribute("height", Math.abs(y - drag.y0));
  }
}

async function stageUp() {
  const d = drag;
  drag = null;
  if (!d || d.kind === "pan") return;
  if (d.kind === "stroke") {
    const erase = S.tool === "eraser";
    const info = await edit("brush", { id: S.selected, label: S.label, points: d.points, radius: S.brush, erase });
    if (info && S.selected === null && !erase) {
      const added = info.instances[info.instances.length - 1];
      if (added) select(added.id);
    }
    d.line.remove();
  } else if (d.kind === "box") {
    d.rect.remove();
    const box = [Math.round(Math.min(d.x0, d.x)), Math.round(Math.min(d.y0, d.y)),
      Math.round(Math.max(d.x0, d.x)), Math.round(Math.max(d.y0, d.y))];
    const info = await edit("box", { box, label: S.label });
    if (info) { const added = info.instances[info.instances.length - 1]; if (added) select(added.id); }
  }
}

function stageWheel(ev) {
  ev.preventDefault();
  const r = $("#stage").getBoundingClientRect();
  const px = ev.clientX - r.left;
  const py = ev.clientY - r.top;
  const f = Math.exp(-ev.deltaY * 0.0015);
  const s = Math.min(Math.max(S.view.s * f, 0.01), 64);
  S.view.x = px - (px - S.view.x) * (s / S.view.s);
  S.view.y = py - (py - S.view.y) * (s / S.view.s);
  S.view.s = s;
  applyView();
  drawOverlay();
}

// ---- commands ------------------------------------------------------------------------------

function setTool(tool) {
  S.tool = tool;
  document.querySelectorAll("#toolbar .tool").forEach((b) => b.classList.toggle("on", b.dataset.tool === tool));
}

function setLabel(label) {
  if (label < 0 || label >= S.classes.length) return;
  S.label = label;
  $("#label").value = label;
  const inst = S.info && S.info.instances.find((i) => i.id === S.selected);
  if (inst && inst.label !== label) edit("label", { id: inst.id, label });
}

function step(delta) {
  const names = shownNames();
  if (!names.length) return;
  const i = names.indexOf(S.current);
  const j = i < 0 ? 0 : Math.min(Math.max(i + delta, 0), names.length - 1);
  if (names[j] !== S.current) openImage(names[j]);
}

function backToGrid() {
  S.current = null;
  S.info = null;
  $("#image-view").hidden = true;
  $("#grid-view").hidden = false;
  applyFilter();
}

let thresholdTimer = null;
function setThreshold(v) {
  S.threshold = v;
  $("#threshold-value").textContent = v.toFixed(2);
  for (const sm of S.images) updateTile(sm);
  applyFilter();
  drawOverlay();
  clearTimeout(thresholdTimer);
  thresholdTimer = setTimeout(async () => {
    try { await api("api/threshold", { value: v }); showPicture(); } catch (err) { toast(err.message, true); }
  }, 200);
}

const keysDown = new Set();

function onKey(ev) {
  if (ev.type === "keyup") { keysDown.delete(ev.key); return; }
  keysDown.add(ev.key);
  if (ev.target.matches("input[type=text], input:not([type]), select") || $("dialog[open]")) return;
  if (!$("#image-view").hidden) {
    const k = ev.key.toLowerCase();
    if ((ev.ctrlKey || ev.metaKey) && k === "z") { ev.preventDefault(); edit(ev.shiftKey ? "redo" : "undo"); return; }
    if ((ev.ctrlKey || ev.metaKey) && k === "y") { ev.preventDefault(); edit("redo"); return; }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const tools = { v: "select", b: "brush", e: "eraser", a: "seed", x: "box" };
    if (tools[k]) { setTool(tools[k]); return; }
    if (ev.key === "ArrowRight") { step(1); return; }
    if (ev.key === "ArrowLeft") { step(-1); return; }
    if (ev.key === "Escape") { if (S.selected !== null) select(null); else backToGrid(); return; }
    if ((k === "t" || ev.key === "Delete") && S.selected !== null) { edit("toggle", { id: S.selected }); return; }
    if (k === "f") { S.after = !S.after; showPicture(); return; }
    if (k === "c") { edit("confirm", { value: !(S.info && S.info.confirmed) }); return; }
    if (k === "0") { fit(); drawOverlay(); return; }
    if (ev.key === "[") { setBrush(S.brush / 1.25); return; }
    if (ev.key === "]") { setBrush(S.brush * 1.25); return; }
    if (/^[1-9]$/.test(ev.key)) { setLabel(Number(ev.key) - 1); return; }
    if (ev.key === " ") ev.preventDefault();
  }
}

function setBrush(v) {
  S.brush = Math.min(Math.max(Math.round(v), 1), 200);
  $("#brush-size").value = S.brush;
  $("#brush-value").textContent = S.brush;
}

// ---- open, browse, export ------------------------------------------------------------------

async function openFolder(folder, output) {
  try {
    await api("api/open", { folder, output });
    S.shownFolder = null; // show the folder and output the server opened, even if unchanged
    await loadState();
    backToGrid();
  } catch (err) { toast(err.message, true); }
}

async function browse(path) {
  try {
    const d = await api(`api/dirs?path=${encodeURIComponent(path || "")}`);
    $("#browse-path").textContent = d.path;
    $("#browse-path").dataset.path = d.path;
    const ul = $("#browse-list");
    ul.textContent = "";
    const up = document.createElement("li");
    up.textContent = "..";
    up.addEventListener("click", () => browse(d.parent));
    ul.appendChild(up);
    for (const name of d.dirs) {
      const li = document.createElement("li");
      li.textContent = name;
      li.addEventListener("click", () => browse(`${d.path}/${name}`));
      ul.appendChild(li);
    }
    if (!$("#browse-dialog").open) $("#browse-dialog").showModal();
  } catch (err) { toast(err.message, true); }
}

async function doExport() {
  const form = $("#export-form");
  const body = {};
  for (const k of ["green", "deepcreampy", "masks", "coco", "confirmed_only"]) body[k] = form.elements[k].checked;
  $("#export-result").textContent = "exporting…";
  $("#export-go").disabled = true;
  try {
    const r = await api("api/export", body);
    let text = `${r.images} images exported to ${r.output} in ${r.seconds} s`;
    if (r.not_ready) text += `; ${r.not_ready} not detected yet`;
    if (r.failed.length) text += `; ${r.failed.length} failed: ${r.failed.map((f) => `${f.name}: ${f.reason}`).join("; ")}`;
    $("#export-result").textContent = text;
  } catch (err) {
    $("#export-result").textContent = err.message;
  } finally { $("#export-go").disabled = false; }
}

function init() {
  $("#grid").addEventListener("click", (ev) => {
    const fig = ev.target.closest(".tile");
    if (fig) openImage(fig.dataset.name);
  });
  $("#open-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    openFolder($("#folder").value.trim(), $("#output").value.trim() || null);
  });
  $("#browse").addEventListener("click", () => browse($("#folder").value.trim()));
  $("#browse-pick").addEventListener("click", () => {
    $("#folder").value = $("#browse-path").dataset.path;
    $("#output").value = "";
    $("#browse-dialog").close();
    openFolder($("#folder").value, null);
  });
  $("#cancel").addEventListener("click", () => api("api/cancel", {}).then(showProgress).catch((e) => toast(e.message, true)));
  $("#resume").addEventListener("click", () => api("api/run", {}).then(showProgress).catch((e) => toast(e.message, true)));
  $("#threshold").addEventListener("input", (ev) => setThreshold(Number(ev.target.value)));
  $("#export-open").addEventListener("click", () => { $("#export-result").textContent = ""; $("#export-dialog").showModal(); });
  $("#export-go").addEventListener("click", doExport);
  document.querySelectorAll("#filters button").forEach((b) => b.addEventListener("click", () => {
    S.filter = b.dataset.filter;
    document.querySelectorAll("#filters button").forEach((o) => o.classList.toggle("on", o === b));
    applyFilter();
  }));
  document.querySelectorAll("#toolbar .tool").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
  $("#label").addEventListener("change", (ev) => setLabel(Number(ev.target.value)));
  $("#brush-size").addEventListener("input", (ev) => setBrush(Number(ev.target.value)));
  $("#back").addEventListener("click", backToGrid);
  $("#prev").addEventListener("click", () => step(-1));
  $("#next").addEventListener("click", () => step(1));
  $("#after").addEventListener("click", () => { S.after = !S.after; showPicture(); });
  $("#undo").addEventListener("click", () => edit("undo"));
  $("#redo").addEventListener("click", () => edit("redo"));
  $("#confirm").addEventListener("click", () => edit("confirm", { value: !(S.info && S.info.confirmed) }));
  const stage = $("#stage");
  stage.addEventListener("pointerdown", stageDown);
  stage.addEventListener("pointermove", stageMove);
  stage.addEventListener("pointerup", stageUp);
  stage.addEventListener("wheel", stageWheel, { passive: false });
  document.addEventListener("keydown", onKey);
  document.addEventListener("keyup", onKey);
  window.addEventListener("resize", () => { if (S.info) { fit(); drawOverlay(); } });
  loadState().catch((err) => toast(err.message, true));
}

init();
