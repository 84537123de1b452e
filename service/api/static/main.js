// The explorer: wires the panels to the public /v1 API. Each panel has at most one request in flight and the
// latest input wins (api.js: Latest). The view's state lives in the URL, so a view can be linked.

import { ApiError, Latest, getJson, onKeyNeeded, pngUrl, postFile, postJson } from "./api.js";
import { COLORS, LatentMap } from "./map.js";
import { Pad } from "./pad.js";

const $ = (id) => document.getElementById(id);
const DIGITS = [...Array(10).keys()];
const timings = { hover: [] }; // read by the browser test: pointer move -> decoded image shown, in ms
window.digitae = { timings };

// -- state in the URL -----------------------------------------------------------------------------------

const params = new URLSearchParams(location.search);
const state = {
  model: params.get("model"),
  compare: params.get("compare") || "",
  img: params.get("img"), // the preprocessed 28x28 input, PNG base64: small enough for a link
  noise: params.get("noise") || "0.3",
  occl: params.get("occl") || "0.15",
  seed: params.get("seed") || "0",
  pins: [params.get("a"), params.get("b")].map((p) => (p ? p.split(",").map(Number) : null)),
  dd: params.get("dd") || "0",
  from: params.get("from") || "d1",
  to: params.get("to") || "d7",
  steps: params.get("steps") || "10",
  sd: params.get("sd") || "3",
  sigma: params.get("sigma") || "1",
  n: params.get("n") || "20",
  sseed: params.get("sseed") || "0",
};

function saveState() {
  const p = new URLSearchParams();
  const put = (k, v, dflt) => v != null && v !== "" && String(v) !== dflt && p.set(k, v);
  put("model", state.model);
  put("compare", state.compare, "");
  put("noise", state.noise, "0.3");
  put("occl", state.occl, "0.15");
  put("seed", state.seed, "0");
  put("dd", state.dd, "0");
  put("from", state.from, "d1");
  put("to", state.to, "d7");
  put("steps", state.steps, "10");
  put("sd", state.sd, "3");
  put("sigma", state.sigma, "1");
  put("n", state.n, "20");
  put("sseed", state.sseed, "0");
  state.pins.forEach((z, i) => z && p.set("ab"[i], z.map((v) => +v.toFixed(3)).join(",")));
  put("img", state.img);
  history.replaceState(null, "", `${location.pathname}?${p}`);
}

// -- small helpers --------------------------------------------------------------------------------------

function showError(id, err) {
  const box = $(id);
  if (!err) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  const status = err instanceof ApiError && err.status ? `${err.status}: ` : "";
  box.textContent = `${status}${err.message}`;
  box.hidden = false;
}

const pct = (p) => `${Math.round(p * 100)}%`;
function setVerdict(node, v, short = false) {
  node.textContent = v ? `${short ? "" : "judge: "}${v.digit} · ${pct(v.confidence)}` : "";
  node.title = v ? `The classifier sees a ${v.digit} with probability ${v.confidence.toFixed(3)}` : "";
}

let judgeAvailable = true;
async function judge(images) {
  if (!judgeAvailable || !images.length) return images.map(() => null);
  try {
    const r = await postJson("/v1/classify", { images: images.map((image) => ({ image })) });
    return r.results;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      judgeAvailable = false; // no classifier checkpoint is served: show images without verdicts
      return images.map(() => null);
    }
    throw err;
  }
}

function lossList(node, loss, extra = []) {
  node.replaceChildren();
  const rows = [
    ["MSE", loss.mse, "mean squared error per pixel"],
    ["BCE", loss.bce, "binary cross-entropy per pixel"],
  ];
  if (loss.kl != null) rows.push(["KL", loss.kl, "nats"], ["ELBO", loss.elbo, "nats"]);
  for (const [name, value, help] of [...rows, ...extra]) {
    const wrap = document.createElement("div");
    const dt = document.createElement("dt");
    dt.textContent = name;
    dt.title = help;
    const dd = document.createElement("dd");
    dd.textContent = Math.abs(value) >= 10 ? value.toFixed(1) : value.toFixed(4);
    wrap.append(dt, dd);
    node.append(wrap);
  }
}

/** A row or grid of images with the judge's verdict under each. */
function imageGrid(node, images, verdicts, captions = []) {
  node.replaceChildren();
  images.forEach((b64, i) => {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.className = "digit";
    img.src = pngUrl(b64);
    const v = verdicts[i];
    img.alt = `${captions[i] || `image ${i + 1}`}${v ? `; the judge sees a ${v.digit}` : ""}`;
    fig.append(img);
    if (captions[i]) {
      const c = document.createElement("figcaption");
      c.textContent = captions[i];
      fig.append(c);
    }
    const p = document.createElement("p");
    p.className = "verdict";
    setVerdict(p, v, true);
    fig.append(p);
    node.append(fig);
  });
}

/** Every image in `node` as one PNG file, `columns` wide, each pixel 4x4. */
async function downloadImages(node, name, columns) {
  const imgs = [...node.querySelectorAll("img.digit")];
  if (!imgs.length) return;
  const size = 28 * 4;
  const gap = 4;
  const cols = Math.min(columns, imgs.length);
  const rows = Math.ceil(imgs.length / cols);
  const canvas = document.createElement("canvas");
  canvas.width = cols * (size + gap) + gap;
  canvas.height = rows * (size + gap) + gap;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = false;
  imgs.forEach((img, i) => {
    ctx.drawImage(img, gap + (i % cols) * (size + gap), gap + Math.floor(i / cols) * (size + gap), size, size);
  });
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `${name}.png`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function option(value, text, disabled = false) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  o.disabled = disabled;
  return o;
}

// -- models ---------------------------------------------------------------------------------------------

let models = []; // GET /v1/models
const details = new Map(); // name -> {detail, atlas}
let current = null; // {b64, label}: the image the panels work on (the API's preprocessed input)

async function modelData(name) {
  if (!details.has(name)) {
    const detail = await getJson(`/v1/models/${name}`);
    let atlas = null;
    try {
      atlas = await getJson(`/v1/models/${name}/atlas`);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
    }
    details.set(name, { detail, atlas });
  }
  return details.get(name);
}

const kindName = (kind) => (kind === "vae" ? "variational auto-encoder" : "auto-encoder");
const model = () => models.find((m) => m.name === state.model);

// -- 1: the drawing and what the model sees ---------------------------------------------------------

const drawLive = new Latest((err) => showError("draw-error", err));

function submitImage(source) {
  drawLive.run(async () => {
    const name = state.model;
    const path = `/v1/models/${name}/reconstruct`;
    const r = source.file ? await postFile(path, source.file) : await postJson(path, { image: source.b64 });
    showError("draw-error", null);
    current = { b64: r.input, label: source.label };
    state.img = r.input;
    saveState();
    if (source.file) await pad.show(pngUrl(r.input));
    $("seen").src = pngUrl(r.input);
    $("recon").src = pngUrl(r.image);
    lossList($("losses"), r.loss);
    const [encoding, verdicts] = await Promise.all([
      postJson(`/v1/models/${name}/encode`, { image: r.input }),
      judge([r.input, r.image]),
    ]);
    setVerdict($("seen-verdict"), verdicts[0]);
    setVerdict($("recon-verdict"), verdicts[1]);
    bars(encoding.centroid_distances, encoding.nearest_digit);
    const v = verdicts[1];
    $("nearest").innerHTML = "";
    const strong = document.createElement("strong");
    strong.textContent = String(encoding.nearest_digit);
    strong.style.background = COLORS[encoding.nearest_digit];
    $("nearest").append("Nearest digit: ", strong, v ? ` — the judge reads the reconstruction as a ${v.digit} (${pct(v.confidence)})` : "");
    map.set("drawn", { mu: r.latent, sigma: r.logvar ? r.logvar.map((l) => Math.exp(0.5 * l)) : null });
    refreshPathOptions();
    robust();
    if (state.from === "drawn" || state.to === "drawn") path();
    compare();
  });
}

function bars(distances, nearest) {
  const svg = $("distances");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const max = Math.max(...distances) || 1;
  distances.forEach((d, i) => {
    const h = (d / max) * 92;
    const x = 6 + i * 29.4;
    const rect = document.createElementNS(ns, "rect");
    Object.entries({ x, y: 104 - h, width: 22, height: h, rx: 3, fill: i === nearest ? COLORS[i] : "#c9d1dd" })
      .forEach(([k, v]) => rect.setAttribute(k, v));
    const title = document.createElementNS(ns, "title");
    title.textContent = `digit ${i}: distance ${d.toFixed(3)}`;
    rect.append(title);
    const label = document.createElementNS(ns, "text");
    Object.entries({ x: x + 11, y: 120, "text-anchor": "middle", class: i === nearest ? "bar-label on" : "bar-label" })
      .forEach(([k, v]) => label.setAttribute(k, v));
    label.textContent = String(i);
    const value = document.createElementNS(ns, "text");
    Object.entries({ x: x + 11, y: 100 - h, "text-anchor": "middle", class: "bar-value" })
      .forEach(([k, v]) => value.setAttribute(k, v));
    value.textContent = d >= 10 ? d.toFixed(0) : d.toFixed(1);
    svg.append(rect, label, value);
  });
}

// -- 2: robustness ------------------------------------------------------------------------------------

const robustLive = new Latest((err) => showError("robust-error", err));

function robust() {
  if (!current) return;
  robustLive.run(async () => {
    const corruption = { seed: Number(state.seed) || 0 };
    if (Number(state.noise) > 0) corruption.noise = { mean: 0, std: Number(state.noise) };
    if (Number(state.occl) > 0) corruption.occlusion = { area: Number(state.occl) };
    const body = { image: current.b64 };
    if (corruption.noise || corruption.occlusion) body.corruption = corruption; // both at 0: the clean input
    const r = await postJson(`/v1/models/${state.model}/reconstruct`, body);
    showError("robust-error", null);
    $("corrupt-in").src = pngUrl(r.input);
    $("corrupt-out").src = pngUrl(r.image);
    lossList($("corrupt-losses"), r.loss);
    const verdicts = await judge([r.input, r.image]);
    setVerdict($("corrupt-in-verdict"), verdicts[0]);
    setVerdict($("corrupt-out-verdict"), verdicts[1]);
  });
}

// -- 3: the map, the pinned point and the sliders --------------------------------------------------

const hoverLive = new Latest((err) => showError("map-error", err));
const hoverJudge = new Latest((err) => showError("map-error", err));
const pinLive = new Latest((err) => showError("map-error", err));
let hovering = false;
let verdictTimer = 0;
const VERDICT_SETTLE_MS = 40;

const map = new LatentMap($("map"), {
  onHover(latent, where) {
    hovering = true;
    const box = $("hover");
    box.querySelector("span").textContent = "…"; // this point's verdict is on its way
    delete box.dataset.digit;
    const boxWidth = box.parentElement.clientWidth;
    box.style.left = `${where.x + 110 > boxWidth ? where.x - 106 : where.x + 16}px`;
    box.style.top = `${Math.max(0, where.y - 50)}px`;
    hoverLive.run(async () => {
      const r = await postJson(`/v1/models/${state.model}/decode`, { latent });
      if (!hovering) return;
      const img = box.querySelector("img");
      img.src = pngUrl(r.image);
      await img.decode();
      box.hidden = false;
      timings.hover.push(performance.now() - where.time);
      showError("map-error", null);
      // the verdict follows once the pointer slows down, so it never competes with the next decode
      clearTimeout(verdictTimer);
      verdictTimer = setTimeout(() => hoverJudge.run(async () => {
        const [v] = await judge([r.image]);
        box.querySelector("span").textContent = v ? `${v.digit} · ${pct(v.confidence)}` : "";
        box.dataset.digit = v ? v.digit : "";
      }), VERDICT_SETTLE_MS);
    });
  },
  onLeave() {
    hovering = false;
    $("hover").hidden = true;
  },
  onClick(latent) {
    const slot = state.pins[0] && !state.pins[1] ? 1 : 0;
    if (slot === 0) state.pins[1] = null;
    state.pins[slot] = latent;
    map.set("pins", state.pins);
    setSliders(latent);
    pin(latent, `map point ${"AB"[slot]}`);
    refreshPathOptions();
    saveState();
  },
});

/** Where latent `z` is on the page (viewport pixels): lets the browser test point at a centroid. */
window.digitae.screenOf = (z) => {
  const r = $("map").getBoundingClientRect();
  const [x, y] = map.screenOf(z);
  return [r.left + x, r.top + y];
};

function pin(latent, caption) {
  pinLive.run(async () => {
    const r = await postJson(`/v1/models/${state.model}/decode`, { latent });
    $("pinned-img").src = pngUrl(r.image);
    $("pinned-caption").textContent = `${caption}: (${latent.map((v) => v.toFixed(2)).join(", ")})`;
    const [v] = await judge([r.image]);
    setVerdict($("pinned-verdict"), v);
  });
}

function buildSliders(detail, atlas) {
  const m = detail.latent_dim;
  const holder = $("dim-sliders");
  holder.replaceChildren();
  const rows = atlas ? atlas.codes : Object.values(detail.centroids);
  for (let i = 0; i < m; i++) {
    const values = rows.map((z) => z[i]);
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const span = hi - lo || 2;
    const label = document.createElement("label");
    label.className = "dim";
    const name = document.createElement("span");
    name.textContent = `z${i + 1}`;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: (lo - span * 0.1).toFixed(3), max: (hi + span * 0.1).toFixed(3), step: "any" });
    input.dataset.dim = i;
    input.setAttribute("aria-label", `latent dimension ${i + 1}`);
    const out = document.createElement("output");
    input.addEventListener("input", () => {
      out.textContent = Number(input.value).toFixed(2);
      const z = sliderLatent();
      map.set("cursor", map.toPlane(z));
      pin(z, "sliders");
    });
    label.append(name, input, out);
    holder.append(label);
  }
}

function sliderLatent() {
  return [...$("dim-sliders").querySelectorAll("input")].map((s) => Number(s.value));
}

function setSliders(z) {
  $("dim-sliders").querySelectorAll("input").forEach((s, i) => {
    s.value = z[i];
    s.nextElementSibling.textContent = Number(z[i]).toFixed(2);
  });
}

// -- 4: paths -----------------------------------------------------------------------------------------

const pathLive = new Latest((err) => showError("path-error", err));

function refreshPathOptions() {
  for (const id of ["path-from", "path-to"]) {
    const select = $(id);
    const value = id === "path-from" ? state.from : state.to;
    select.replaceChildren(
      ...DIGITS.map((d) => option(`d${d}`, `centroid of ${d}`)),
      option("drawn", "your image", !current),
      option("A", "map point A", !state.pins[0]),
      option("B", "map point B", !state.pins[1]),
    );
    select.value = value;
    if (select.selectedOptions[0] && select.selectedOptions[0].disabled) select.value = id === "path-from" ? "d1" : "d7";
  }
}

function pathEnd(value) {
  if (value.startsWith("d")) return { digit: Number(value.slice(1)) };
  if (value === "drawn") return current ? { image: current.b64 } : null;
  const z = state.pins["AB".indexOf(value)];
  return z ? { latent: z } : null;
}

function path() {
  pathLive.run(async () => {
    const from = pathEnd(state.from);
    const to = pathEnd(state.to);
    if (!from || !to) return;
    const r = await postJson(`/v1/models/${state.model}/interpolate`, { from, to, steps: Number(state.steps) });
    showError("path-error", null);
    map.set("path", r.latents);
    const verdicts = await judge(r.images);
    imageGrid($("strip"), r.images, verdicts, r.t.map((t) => `t=${t.toFixed(2)}`));
  });
}

// -- 5: sampling ---------------------------------------------------------------------------------------

const sampleLive = new Latest((err) => showError("sample-error", err));

function sampleBody(kind) {
  const body = { n: Number(state.n), seed: Number(state.sseed) || 0, sigma: Number(state.sigma) };
  if (state.sd !== "prior") body.digit = Number(state.sd);
  else if (kind !== "vae") return null;
  return body;
}

function sample() {
  sampleLive.run(async () => {
    const body = sampleBody(model().kind);
    if (!body) return;
    const r = await postJson(`/v1/models/${state.model}/sample`, body);
    showError("sample-error", null);
    const verdicts = await judge(r.images);
    imageGrid($("grid"), r.images, verdicts);
    Object.assign($("grid").dataset, { seed: r.seed, digit: r.digit ?? "prior", sigma: r.sigma });
    $("sample-summary").textContent = summary(verdicts, body.digit);
    compare();
  });
}

function summary(verdicts, digit) {
  if (!verdicts.length || !verdicts[0]) return `${verdicts.length} samples`;
  if (digit == null) {
    const counts = DIGITS.map((d) => verdicts.filter((v) => v.digit === d).length);
    return `The judge's reading of ${verdicts.length} samples from the prior: ${counts.map((c, d) => `${d}×${c}`).filter((_, d) => counts[d]).join(", ")}`;
  }
  const agree = verdicts.filter((v) => v.digit === digit).length;
  return `The judge reads ${agree} of ${verdicts.length} samples as a ${digit} (${pct(agree / verdicts.length)}).`;
}

// -- 6: compare -------------------------------------------------------------------------------------------

const compareLive = new Latest((err) => showError("compare-error", err));

const METRICS = [
  ["mse", "MSE"], ["bce", "BCE"], ["nearest_centroid_accuracy", "nearest-centroid acc."], ["kl", "KL (nats)"], ["elbo", "ELBO (nats)"],
];

function testMetrics(m) {
  const metrics = m.metrics || {};
  if (metrics.heldout) return [metrics.heldout, "MNIST test set"];
  if (metrics.test_split) return [metrics.test_split, "held-out split"];
  return [{}, ""];
}

function compare() {
  const other = models.find((m) => m.name === state.compare);
  const body = $("compare-body");
  if (!other) {
    body.replaceChildren();
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "Pick a second model to see both side by side.";
    body.append(p);
    return;
  }
  compareLive.run(async () => {
    const pair = [model(), other];
    const columns = await Promise.all(pair.map(async (m) => {
      const out = { m };
      if (current) {
        out.recon = await postJson(`/v1/models/${m.name}/reconstruct`, { image: current.b64 });
      }
      const sb = sampleBody(m.kind);
      if (sb) out.samples = await postJson(`/v1/models/${m.name}/sample`, sb);
      const images = [...(out.recon ? [out.recon.image] : []), ...(out.samples ? out.samples.images : [])];
      out.verdicts = await judge(images);
      return out;
    }));
    showError("compare-error", null);
    body.replaceChildren(...columns.map((c) => compareColumn(c)));
  });
}

function compareColumn({ m, recon, samples, verdicts }) {
  const col = document.createElement("article");
  col.className = "compare-col";
  col.dataset.model = m.name;
  const h = document.createElement("h3");
  h.textContent = `${m.name}`;
  const sub = document.createElement("span");
  sub.className = "muted";
  sub.textContent = ` ${kindName(m.kind)}, ${m.latent_dim}-D`;
  h.append(sub);
  col.append(h);
  const [metrics, where] = testMetrics(m);
  const table = document.createElement("table");
  table.className = "metrics";
  const caption = document.createElement("caption");
  caption.textContent = where ? `Model card, ${where}` : "Model card: no test metrics";
  table.append(caption);
  for (const [key, label] of METRICS) {
    if (metrics[key] == null) continue;
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.textContent = label;
    const td = document.createElement("td");
    td.textContent = Math.abs(metrics[key]) >= 10 ? metrics[key].toFixed(1) : metrics[key].toFixed(4);
    tr.append(th, td);
    table.append(tr);
  }
  col.append(table);
  let k = 0;
  if (recon) {
    const fig = document.createElement("div");
    fig.className = "compare-recon";
    imageGrid(fig, [current.b64, recon.image], [null, verdicts[k++]], ["input", "reconstruction"]);
    const dl = document.createElement("dl");
    dl.className = "losses";
    lossList(dl, recon.loss);
    col.append(fig, dl);
  }
  if (samples) {
    const title = document.createElement("p");
    title.className = "muted";
    title.textContent = samples.digit == null ? "Samples from the prior" : `Samples around ${samples.digit}, sigma ${samples.sigma}`;
    const grid = document.createElement("div");
    grid.className = "grid small";
    const v = verdicts.slice(k);
    imageGrid(grid, samples.images, v);
    const s = document.createElement("p");
    s.className = "summary";
    s.textContent = summary(v, samples.digit);
    const save = document.createElement("button");
    save.type = "button";
    save.className = "ghost";
    save.textContent = `Download ${m.name}'s samples (PNG)`;
    save.addEventListener("click", () => downloadImages(grid, `digitae-${m.name}-samples`, 10));
    col.append(title, grid, s, save);
  } else {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "An auto-encoder has no prior: pick a digit to sample.";
    col.append(p);
  }
  return col;
}

// -- model switching ------------------------------------------------------------------------------------

async function selectModel(name) {
  state.model = name;
  saveState();
  const m = model();
  const { detail, atlas } = await modelData(name);
  document.querySelectorAll(".model-name").forEach((n) => (n.textContent = name));
  $("model-info").textContent = `${kindName(m.kind)}, ${m.latent_dim}-dimensional latent`;
  const centroids = DIGITS.map((d) => detail.centroids[String(d)]);
  const spread = DIGITS.map((d) => detail.spread[String(d)]);
  map.setModel({ latentDim: m.latent_dim, centroids, spread, atlas });
  map.set("pins", state.pins.map((z) => (z && z.length === m.latent_dim ? z : null)));
  state.pins = state.pins.map((z) => (z && z.length === m.latent_dim ? z : null));
  $("map-kind").textContent = m.latent_dim === 2 ? "(the 2-D latent plane itself)" : `(a PCA projection of ${m.latent_dim}-D codes)`;
  const empty = $("map-empty");
  empty.hidden = !!atlas;
  empty.textContent = atlas ? "" : `The map has no points: the ${name} checkpoint has no atlas (add one with 'python -m training atlas'). Centroids are still shown, and hovering still decodes.`;
  $("map-help").textContent = atlas
    ? `${atlas.labels.length} real digits ${atlas.source.set === "test_data" ? "from the test set" : "held out from training"}, coloured by their true label; rings show each digit's spread. Hover or drag to decode any point, click to pin it as a path end (arrow keys move a cursor).`
    : "Hover or drag to decode any point; click to pin it as a path end.";
  buildSliders(detail, atlas);
  $("dims").querySelector("h3").textContent = `One slider per latent dimension (${m.latent_dim})`;
  setSliders(centroids[Number(state.dd)]);
  // sampling: a VAE can sample its prior
  const sd = $("sample-digit");
  sd.replaceChildren(...DIGITS.map((d) => option(String(d), `${d}`)), ...(m.kind === "vae" ? [option("prior", "prior N(0, I)")] : []));
  if (state.sd === "prior" && m.kind !== "vae") state.sd = "3";
  sd.value = state.sd;
  // compare: the other models
  const cmp = $("compare");
  cmp.replaceChildren(option("", "— none —"), ...models.filter((o) => o.name !== name).map((o) => option(o.name, o.name)));
  if (state.compare === name) state.compare = "";
  cmp.value = state.compare;
  refreshPathOptions();
  const pinned = state.pins[1] || state.pins[0];
  pin(pinned || centroids[Number(state.dd)], pinned ? "pinned point" : `centroid of ${state.dd}`);
  if (current) submitImage({ b64: current.b64, label: current.label });
  path();
  sample();
  compare();
}

// -- wiring -------------------------------------------------------------------------------------------

const pad = new Pad($("pad"), {
  brush: $("brush"),
  clear: $("clear"),
  file: $("file"),
  dropZone: $("drop-zone"),
  hint: $("pad-hint"),
  onImage: (source) => submitImage(source),
});

function bindRange(id, key, outId, show = (v) => v, after = () => {}) {
  const input = $(id);
  input.value = state[key];
  if (outId) $(outId).textContent = show(input.value);
  input.addEventListener("input", () => {
    state[key] = input.value;
    if (outId) $(outId).textContent = show(input.value);
    saveState();
    after();
  });
}

function wire() {
  bindRange("noise", "noise", "noise-out", (v) => Number(v).toFixed(2), robust);
  bindRange("occl", "occl", "occl-out", (v) => pct(Number(v)), robust);
  bindRange("seed", "seed", null, undefined, robust);
  bindRange("steps", "steps", "steps-out", (v) => v, path);
  bindRange("sigma", "sigma", "sigma-out", (v) => Number(v).toFixed(1), sample);
  bindRange("n", "n", null, undefined, sample);
  bindRange("sample-seed", "sseed", null, undefined, sample);
  $("model").addEventListener("change", (e) => selectModel(e.target.value).catch((err) => showError("map-error", err)));
  $("compare").addEventListener("change", (e) => {
    state.compare = e.target.value;
    saveState();
    compare();
  });
  $("sample-digit").addEventListener("change", (e) => {
    state.sd = e.target.value;
    saveState();
    sample();
  });
  for (const id of ["path-from", "path-to"]) {
    $(id).addEventListener("change", (e) => {
      state[id === "path-from" ? "from" : "to"] = e.target.value;
      saveState();
      path();
    });
  }
  const dd = $("dims-digit");
  dd.replaceChildren(...DIGITS.map((d) => option(String(d), String(d))));
  dd.value = state.dd;
  dd.addEventListener("change", () => {
    state.dd = dd.value;
    saveState();
    const c = details.get(state.model).detail.centroids[state.dd];
    setSliders(c);
    map.set("cursor", map.toPlane(c));
    pin(c, `centroid of ${state.dd}`);
  });
  $("path-download").addEventListener("click", () => downloadImages($("strip"), `digitae-${state.model}-path`, 20));
  $("sample-download").addEventListener("click", () => downloadImages($("grid"), `digitae-${state.model}-samples`, 10));
  $("copy-link").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(location.href);
      $("copied").textContent = "copied";
    } catch {
      $("copied").textContent = location.href;
    }
  });
  $("legend").replaceChildren(...DIGITS.map((d) => {
    const li = document.createElement("li");
    const dot = document.createElement("i");
    dot.style.background = COLORS[d];
    li.append(dot, String(d));
    return li;
  }));
  // examples: real MNIST test digits, the keyboard alternative to the pad
  $("examples").replaceChildren(...DIGITS.map((d) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "example";
    b.setAttribute("aria-label", `example digit ${d}`);
    const img = document.createElement("img");
    img.src = `/explorer/examples/${d}.png`;
    img.alt = "";
    b.append(img);
    b.addEventListener("click", async () => {
      const url = `/explorer/examples/${d}.png`;
      const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
      const b64 = btoa(String.fromCharCode(...bytes));
      await pad.show(url);
      submitImage({ b64, label: `MNIST test digit ${d}` });
    });
    return b;
  }));
  // API keys: asked for on the first 401, kept for this tab
  const dialog = $("key-dialog");
  onKeyNeeded((message) => new Promise((resolve) => {
    $("key-message").textContent = message;
    $("key-input").value = "";
    $("key-button").hidden = false;
    dialog.showModal();
    const done = (value) => {
      dialog.close();
      resolve(value);
    };
    $("key-form").onsubmit = (e) => {
      e.preventDefault();
      done($("key-input").value.trim());
    };
    $("key-cancel").onclick = () => done(null);
  }));
  $("key-button").addEventListener("click", () => {
    sessionStorage.removeItem("digitae.apiKey");
    location.reload();
  });
}

async function start() {
  wire();
  try {
    models = await getJson("/v1/models");
  } catch (err) {
    showError("draw-error", err);
    return;
  }
  const select = $("model");
  select.replaceChildren(...models.map((m) => option(m.name, `${m.name} · ${m.kind.toUpperCase()} ${m.latent_dim}-D`)));
  if (!models.some((m) => m.name === state.model)) {
    state.model = (models.find((m) => m.name === "vae-2") || models[0]).name;
  }
  select.value = state.model;
  if (state.img) {
    current = { b64: state.img, label: "the linked image" };
    await pad.show(pngUrl(state.img));
  }
  await selectModel(state.model);
  document.body.dataset.ready = "true";
}

start().catch((err) => showError("draw-error", err));
