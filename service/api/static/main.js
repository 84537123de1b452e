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
  unit: params.get("unit") === "abs" ? "abs" : "spread", // sigma in the digit's own spread, or in latent units
  z: params.get("z") ? params.get("z").split(",").map(Number) : null, // the latent sliders
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
  put("unit", state.unit, "spread");
  if (state.z) p.set("z", state.z.map((v) => +v.toFixed(3)).join(","));
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
    const r = await postJson("/v1/classify/batch", { images: images.map((image) => ({ image })) });
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
const cards = new Map(); // name -> GET /v1/models/{name}, fetched for every model at start (labels show beta)
let current = null; // {b64, label}: the image the panels work on (the API's preprocessed input)

async function modelData(name) {
  if (!details.has(name)) {
    const detail = cards.get(name) || (await getJson(`/v1/models/${name}`));
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
    const url = `/v1/models/${name}/reconstruct`;
    const r = source.file ? await postFile(url, source.file) : await postJson(url, { image: source.b64 });
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
    const sigma = r.logvar ? r.logvar.map((l) => Math.exp(0.5 * l)) : null;
    map.set("drawn", { mu: r.latent, sigma });
    $("posterior-size").textContent = sigma
      ? `yours: σ = (${sigma.map((v) => v.toFixed(2)).join(", ")}), drawn to scale, so it may hide under the star`
      : "an auto-encoder has none: one image, one point";
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
    showPatch(r.corruption && r.corruption.occlusion);
    noiseCurve();
    lossList($("corrupt-losses"), r.loss);
    const verdicts = await judge([r.input, r.image]);
    setVerdict($("corrupt-in-verdict"), verdicts[0]);
    setVerdict($("corrupt-out-verdict"), verdicts[1]);
  });
}

/** Outline the occluded rectangle: filled with black on a black background, it is otherwise invisible. */
// The report's Fig. 2, live: the loss against the noise std, for this image, model, occlusion and seed.
const NOISE_LEVELS = [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5];
const noiseCurveLive = new Latest((err) => showError("robust-error", err));
let noiseKey = "";

function noiseCurve() {
  if (!current) return;
  const key = JSON.stringify([state.model, current.b64, state.occl, state.seed]);
  if (key === noiseKey) return markNoise();
  noiseKey = key;
  noiseCurveLive.run(async () => {
    const losses = await Promise.all(NOISE_LEVELS.map(async (std) => {
      const corruption = { seed: Number(state.seed) || 0, noise: { mean: 0, std } };
      if (Number(state.occl) > 0) corruption.occlusion = { area: Number(state.occl) };
      return (await postJson(`/v1/models/${state.model}/reconstruct`, { image: current.b64, corruption })).loss.mse;
    }));
    drawNoiseCurve(losses);
  });
}

function noiseX(std) {
  return 40 + (std / NOISE_LEVELS[NOISE_LEVELS.length - 1]) * 270;
}

function drawNoiseCurve(losses) {
  const svg = $("noise-curve");
  const ns = "http://www.w3.org/2000/svg";
  const top = Math.max(...losses) * 1.1 || 1;
  const y = (v) => 8 + (1 - v / top) * 100;
  const el = (name, attrs, text) => {
    const node = document.createElementNS(ns, name);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
    if (text != null) node.textContent = text;
    return node;
  };
  svg.replaceChildren();
  for (const v of [0, top / 2, top]) {
    svg.append(el("line", { x1: 40, x2: 310, y1: y(v), y2: y(v), stroke: "#e1e6ee" }));
    svg.append(el("text", { x: 36, y: y(v) + 4, "text-anchor": "end", class: "bar-label" }, v.toFixed(3)));
  }
  for (const std of NOISE_LEVELS) svg.append(el("text", { x: noiseX(std), y: 122, "text-anchor": "middle", class: "bar-label" }, String(std)));
  svg.append(el("text", { x: 175, y: 137, "text-anchor": "middle", class: "bar-label" }, "noise std (MSE against the clean input)"));
  const line = el("polyline", {
    points: NOISE_LEVELS.map((std, i) => `${noiseX(std)},${y(losses[i])}`).join(" "),
    fill: "none", stroke: "#0072B2", "stroke-width": 2,
  });
  line.dataset.mse = losses.join(",");
  svg.append(line);
  svg.setAttribute("aria-label", `MSE against the noise std for ${state.model}: `
    + NOISE_LEVELS.map((std, i) => `${losses[i].toFixed(3)} at ${std}`).join(", "));
  markNoise();
}

function markNoise() {
  const svg = $("noise-curve");
  svg.querySelector(".noise-mark")?.remove();
  if (!svg.childElementCount) return;
  const x = noiseX(Math.min(Number(state.noise), NOISE_LEVELS[NOISE_LEVELS.length - 1]));
  const mark = document.createElementNS("http://www.w3.org/2000/svg", "line");
  Object.entries({ x1: x, x2: x, y1: 8, y2: 108, stroke: "#1b2330", "stroke-dasharray": "2 3", class: "noise-mark" })
    .forEach(([k, v]) => mark.setAttribute(k, v));
  svg.append(mark);
}

function showPatch(rect) {
  const box = $("occl-box");
  box.hidden = !rect;
  $("occl-key").hidden = !rect;
  if (!rect) return;
  const side = 28;
  Object.assign(box.style, {
    left: `${(100 * rect.left) / side}%`, top: `${(100 * rect.top) / side}%`,
    width: `${(100 * rect.width) / side}%`, height: `${(100 * rect.height) / side}%`,
  });
  Object.assign(box.dataset, { top: rect.top, left: rect.left, height: rect.height, width: rect.width });
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
        $("hover-status").textContent = v
          ? `Under the cursor the model draws a digit the judge reads as ${v.digit} (${pct(v.confidence)})`
          : "Under the cursor: decoded";
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
    state.z = latent;
    pin(latent, `map point ${"AB"[slot]}`);
    if (slot === 1) [state.from, state.to] = ["A", "B"]; // two pins: the path runs from A to B
    refreshPathOptions();
    saveState();
    if (slot === 1) path();
  },
});

/** What the map draws over the digits (samples, path, pins, your code): lets the browser test check it. */
window.digitae.overlays = () => map.overlays;

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
      input.setAttribute("aria-valuetext", out.textContent);
      const z = sliderLatent();
      state.z = z;
      saveState();
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
    s.setAttribute("aria-valuetext", s.nextElementSibling.textContent);
  });
}

/** For a PCA map: how much of the codes' variance each axis holds, and how a hovered point is decoded. */
function projectionNote(m) {
  const note = $("map-projection");
  const variance = map.explained();
  note.hidden = !variance;
  if (!variance) return;
  note.textContent = `PC 1 holds ${pct(variance[0])} and PC 2 ${pct(variance[1])} of the codes' variance; the other `
    + `${m.latent_dim - 2} dimensions are not drawn. A hovered point is decoded with those dimensions taken from the `
    + "real codes nearest to it on the map (their mean), so it decodes like the data there; a centroid's disc decodes "
    + "that centroid itself, and a click pins the full code.";
}

function lossHelp(kind) {
  $("loss-help").textContent = "MSE: mean squared error per pixel (0 = perfect). BCE: binary cross-entropy per pixel, "
    + "the loss the models are trained on (lower is better)."
    + (kind === "vae" ? " KL: how far this image's posterior is from the prior N(0, I), in nats. ELBO = −(BCE summed "
      + "over 784 pixels + KL): a lower bound on the image's log-likelihood; it is negative, and higher (closer to 0) "
      + "is better. A VAE encodes each image as a distribution q(z|x) = N(μ, σ²); training decodes z = μ + σ ⊙ ε "
      + "with ε ~ N(0, I) (the reparameterisation) and minimises BCE + β·KL; here z = μ is decoded." : "");
}

// -- 4: paths -----------------------------------------------------------------------------------------

const pathLive = new Latest((err) => {
  showError("path-error", err);
  $("strip").replaceChildren(); // never leave an older path's strip under the error
  $("path-note").hidden = true;
  map.set("path", null);
});

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
  if (/^d\d$/.test(value)) return { digit: Number(value.slice(1)) };
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
    pathNote(from, to, verdicts);
  });
}

const PLAY_STEP_MS = 300;
let playTimer = 0;

/** Animation along the path: each step's image in turn, its point marked on the map. */
function playPath() {
  clearInterval(playTimer);
  const imgs = [...$("strip").querySelectorAll("img.digit")];
  const latents = map.overlays.path || [];
  const frame = $("path-frame");
  if (!imgs.length) return;
  $("path-player").hidden = false;
  let step = 0;
  const show = () => {
    frame.src = imgs[step].src;
    frame.alt = `step ${step + 1} of ${imgs.length}: ${imgs[step].alt}`;
    frame.dataset.step = step;
    $("path-frame-caption").textContent = imgs[step].closest("figure").querySelector("figcaption")?.textContent || "";
    if (latents[step]) map.set("cursor", map.toPlane(latents[step]));
    step += 1;
    if (step >= imgs.length) clearInterval(playTimer);
  };
  show();
  playTimer = setInterval(show, PLAY_STEP_MS);
}

/** When a centroid end decodes as another digit, say why: the mean of a digit's codes need not lie among them. */
function pathNote(from, to, verdicts) {
  const note = $("path-note");
  const odd = [[from, verdicts[0]], [to, verdicts[verdicts.length - 1]]]
    .filter(([end, v]) => end.digit != null && v && v.digit !== end.digit);
  note.hidden = !odd.length;
  note.textContent = odd.map(([end, v]) => `The centroid of ${end.digit} decodes as a ${v.digit} (${pct(v.confidence)}): `
    + `in ${state.model} the mean code of the ${end.digit}s lies among the ${v.digit}s, not in the middle of its own digits `
    + `(a mean of a curved or split cluster can fall outside it; see the map, panel 4).`).join(" ");
}

// -- 5: sampling ---------------------------------------------------------------------------------------

const sampleLive = new Latest((err) => showError("sample-error", err));

/** A seeded stream of standard normal draws (mulberry32, then Box-Muller): the same seed, the same samples. */
function normals(seed, count) {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [];
  while (out.length < count) {
    const r = Math.sqrt(-2 * Math.log(1 - uniform()));
    const angle = 2 * Math.PI * uniform();
    out.push(r * Math.cos(angle), r * Math.sin(angle));
  }
  return out.slice(0, count);
}

/**
 * Samples of model `m` for the panel's settings: {images, latents, digit, sigma, unit} or null (an AE has no prior).
 * Absolute units: the API's /sample, N(centroid, sigma² I); the prior: /prior/sample. The digit's own spread (the fair reading across models,
 * whose latent scales differ about 8x): centroid + sigma · spread ⊙ ε, decoded by /decode.
 */
async function drawSamples(m) {
  const n = Number(state.n);
  const seed = Number(state.sseed) || 0;
  const sigma = Number(state.sigma);
  if (state.sd === "prior") {
    if (m.kind !== "vae") return null;
    const r = await postJson(`/v1/models/${m.name}/prior/sample`, { n, seed });
    return { images: r.images, latents: r.latents, digit: null, sigma: 1, unit: "prior", seed };
  }
  const digit = Number(state.sd);
  if (state.unit === "abs") {
    const r = await postJson(`/v1/models/${m.name}/sample`, { n, seed, sigma, digit });
    return { images: r.images, latents: r.latents, digit, sigma, unit: "abs", seed };
  }
  const { detail } = await modelData(m.name);
  const centre = detail.centroids[String(digit)];
  const spread = detail.spread[String(digit)];
  const eps = normals(seed, n * centre.length);
  const latents = [...Array(n).keys()].map((i) => centre.map((c, j) => c + sigma * spread[j] * eps[i * centre.length + j]));
  const r = await postJson(`/v1/models/${m.name}/decode/batch`, { latents });
  return { images: r.results.map((x) => x.image), latents, digit, sigma, unit: "spread", seed };
}

function sigmaText(sigma, unit) {
  if (unit === "prior") return "the prior N(0, I)";
  return unit === "abs" ? `sigma ${Number(sigma).toFixed(1)} latent units` : `sigma ${Number(sigma).toFixed(1)} × the digit's spread`;
}

function sample() {
  const prior = state.sd === "prior";
  $("sigma").disabled = prior;
  $("sigma-unit").disabled = prior;
  $("sample-help").textContent = prior
    ? "Codes drawn from the VAE's prior N(0, I), decoded: sigma does not apply. An auto-encoder has no prior."
    : state.unit === "abs"
      ? "Codes drawn from N(centroid, sigma² I) in raw latent units, decoded. Models' latent scales differ (about 8× between ae-2 and vae-2), so the same sigma is a small step in one model and a leap in another."
      : "Codes drawn around the digit's centroid at sigma times that digit's own spread along each dimension (its codes' standard deviation), decoded. Sigma 1 stays inside the digit's cloud in any model: the fair comparison. Triangles on the map show where the samples land.";
  sampleLive.run(async () => {
    const m = model();
    const r = await drawSamples(m);
    if (!r) return;
    showError("sample-error", null);
    const verdicts = await judge(r.images);
    imageGrid($("grid"), r.images, verdicts);
    Object.assign($("grid").dataset, { seed: r.seed, digit: r.digit ?? "prior", sigma: r.sigma, unit: r.unit });
    map.set("samples", r.latents);
    $("sample-summary").textContent = `${summary(verdicts, r.digit)} (${sigmaText(r.sigma, r.unit)})`;
    hitCurve();
    compare();
  });
}

// The report's curve, live: the judge's hit rate against sigma, for this model and the one compared with it.
const CURVE_SIGMAS = [0, 0.5, 1, 1.5, 2, 3, 4, 6];
const CURVE_N = 8; // samples per sigma: 64 codes, one /decode and one /classify per model
const curveLive = new Latest((err) => showError("sample-error", err));
let curveKey = "";

async function hitRates(m, digit) {
  const { detail } = await modelData(m.name);
  const centre = detail.centroids[String(digit)];
  const scale = state.unit === "abs" ? centre.map(() => 1) : detail.spread[String(digit)];
  const eps = normals((Number(state.sseed) || 0) + 1, CURVE_SIGMAS.length * CURVE_N * centre.length);
  let k = 0;
  const latents = CURVE_SIGMAS.flatMap((sigma) => [...Array(CURVE_N)].map(() => centre.map((c, j) => c + sigma * scale[j] * eps[k++])));
  const r = await postJson(`/v1/models/${m.name}/decode/batch`, { latents });
  const verdicts = await judge(r.results.map((x) => x.image));
  if (!verdicts[0]) return null;
  return CURVE_SIGMAS.map((_, i) => verdicts.slice(i * CURVE_N, (i + 1) * CURVE_N).filter((v) => v.digit === digit).length / CURVE_N);
}

function hitCurve() {
  const svg = $("hit-curve");
  const prior = state.sd === "prior";
  $("curve-box").hidden = prior;
  if (prior) return;
  const pair = [model(), models.find((o) => o.name === state.compare)].filter(Boolean);
  const key = JSON.stringify([pair.map((m) => m.name), state.sd, state.unit, state.sseed]);
  if (key !== curveKey) {
    curveKey = key;
    curveLive.run(async () => {
      const digit = Number(state.sd);
      const rates = await Promise.all(pair.map((m) => hitRates(m, digit)));
      drawCurve(svg, pair, rates, digit);
    });
  } else {
    drawCurve(svg, null, null, Number(state.sd)); // only sigma moved: move the marker
  }
}

function drawCurve(svg, pair, rates, digit) {
  const ns = "http://www.w3.org/2000/svg";
  const [w, h, left, bottom] = [320, 150, 34, 28];
  const max = CURVE_SIGMAS[CURVE_SIGMAS.length - 1];
  const x = (sigma) => left + (sigma / max) * (w - left - 10);
  const y = (rate) => 8 + (1 - rate) * (h - bottom - 8);
  const el = (name, attrs, text) => {
    const node = document.createElementNS(ns, name);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
    if (text != null) node.textContent = text;
    return node;
  };
  if (pair) {
    svg.replaceChildren();
    for (const rate of [0, 0.5, 1]) {
      svg.append(el("line", { x1: left, x2: w - 10, y1: y(rate), y2: y(rate), stroke: "#e1e6ee" }));
      svg.append(el("text", { x: left - 4, y: y(rate) + 4, "text-anchor": "end", class: "bar-label" }, pct(rate)));
    }
    for (const sigma of CURVE_SIGMAS) svg.append(el("text", { x: x(sigma), y: h - 14, "text-anchor": "middle", class: "bar-label" }, String(sigma)));
    const unit = state.unit === "abs" ? "sigma (latent units)" : "sigma (× the digit's spread)";
    svg.append(el("text", { x: left + (w - left) / 2, y: h - 1, "text-anchor": "middle", class: "bar-label" }, unit));
    const dashes = ["", "6 4"];
    pair.forEach((m, i) => {
      if (!rates[i]) return;
      const points = CURVE_SIGMAS.map((sigma, k) => `${x(sigma)},${y(rates[i][k])}`).join(" ");
      const line = el("polyline", { points, fill: "none", stroke: i ? "#D55E00" : "#0072B2", "stroke-width": 2, "stroke-dasharray": dashes[i] });
      line.dataset.model = m.name;
      line.dataset.rates = rates[i].join(",");
      const last = rates[i][rates[i].length - 1];
      svg.append(line, el("text", { x: w - 12, y: y(last) - 5 - 10 * i, "text-anchor": "end", class: "bar-label on" }, m.name));
    });
    svg.setAttribute("aria-label", `The judge's hit rate for digit ${digit} against sigma: `
      + pair.map((m, i) => (rates[i] ? `${m.name} ${rates[i].map(pct).join(", ")}` : "")).join("; ")
      + ` at sigma ${CURVE_SIGMAS.join(", ")}`);
  }
  svg.querySelector(".sigma-mark")?.remove();
  const sigma = Math.min(Number(state.sigma), max);
  svg.append(el("line", { x1: x(sigma), x2: x(sigma), y1: 8, y2: h - bottom, stroke: "#1b2330", "stroke-dasharray": "2 3", class: "sigma-mark" }));
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
      out.samples = await drawSamples(m);
      out.data = await modelData(m.name);
      const images = [...(out.recon ? [out.recon.image] : []), ...(out.samples ? out.samples.images : [])];
      out.verdicts = await judge(images);
      return out;
    }));
    showError("compare-error", null);
    body.replaceChildren(...columns.map((c) => compareColumn(c)));
  });
}

function compareColumn({ m, recon, samples, verdicts, data }) {
  const col = document.createElement("article");
  col.className = "compare-col";
  col.dataset.model = m.name;
  const h = document.createElement("h3");
  h.textContent = `${m.name}`;
  const sub = document.createElement("span");
  sub.className = "muted";
  sub.textContent = ` ${modelLabel(m)}`;
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
  const defs = document.createElement("p");
  defs.className = "muted explain";
  defs.textContent = "MSE and BCE: per pixel, lower is better. Nearest-centroid acc.: the share of test digits whose code lies nearest its own digit's centroid."
    + (m.kind === "vae" ? " KL: nats the codes spend away from the prior N(0, I). ELBO = −(summed BCE + KL): a log-likelihood bound, negative, higher (closer to 0) is better." : "");
  col.append(defs);
  col.append(compareMap(m, data, recon, samples));
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
    title.textContent = samples.digit == null ? "Samples from the prior N(0, I)" : `Samples around ${samples.digit}, ${sigmaText(samples.sigma, samples.unit)}`;
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

/** The model's own latent map, beside the other's: the report's core figure, with this view's samples on it. */
function compareMap(m, data, recon, samples) {
  const box = document.createElement("div");
  box.className = "map-box compare-map";
  const canvas = document.createElement("canvas");
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `Latent map of ${m.name}: its held-out digits, centroids and this view's samples`);
  box.append(canvas);
  const none = () => {};
  const small = new LatentMap(canvas, { onHover: none, onLeave: none, onClick: none });
  requestAnimationFrame(() => {
    small.setModel(mapModel(m, data));
    if (samples) small.set("samples", samples.latents);
    if (recon) small.set("drawn", { mu: recon.latent, sigma: recon.logvar ? recon.logvar.map((l) => Math.exp(0.5 * l)) : null });
  });
  return box;
}

function mapModel(m, { detail, atlas }) {
  return {
    latentDim: m.latent_dim,
    centroids: DIGITS.map((d) => detail.centroids[String(d)]),
    spread: DIGITS.map((d) => detail.spread[String(d)]),
    atlas,
  };
}

/** "vae-2 · VAE 2-D · β=4": the beta of the KL term tells vae-2, vae-2-b0.5 and vae-2-b4 apart. */
function modelLabel(m) {
  const known = cards.get(m.name) || details.get(m.name)?.detail;
  const config = known && known.card ? known.card.config || {} : null;
  const kind = m.kind === "vae" ? "VAE" : "AE";
  const beta = m.kind === "vae" && config ? ` · β=${config.beta ?? 1}` : ""; // not yet known: left out, never guessed
  return `${m.name} · ${kind} ${m.latent_dim}-D${beta}`;
}

function modelInfo() {
  const m = model();
  const beta = modelLabel(m).split(" · ")[2];
  $("model-info").textContent = `${kindName(m.kind)}, ${m.latent_dim}-dimensional latent${beta ? `, ${beta} (the weight of the KL term)` : ""}`;
}

// -- model switching ------------------------------------------------------------------------------------

async function selectModel(name) {
  state.model = name;
  saveState();
  const m = model();
  const { detail, atlas } = await modelData(name);
  document.querySelectorAll(".model-name").forEach((n) => (n.textContent = name));
  modelInfo();
  lossHelp(m.kind);
  const centroids = DIGITS.map((d) => detail.centroids[String(d)]);
  map.setModel(mapModel(m, { detail, atlas }));
  projectionNote(m);
  map.set("pins", state.pins.map((z) => (z && z.length === m.latent_dim ? z : null)));
  state.pins = state.pins.map((z) => (z && z.length === m.latent_dim ? z : null));
  $("map-kind").textContent = m.latent_dim === 2 ? "(the 2-D latent plane itself)" : `(a PCA projection of ${m.latent_dim}-D codes)`;
  const empty = $("map-empty");
  empty.hidden = !!atlas;
  empty.textContent = atlas ? "" : `The map has no points: the ${name} checkpoint has no atlas (add one with 'python -m training atlas'). Centroids are still shown, and hovering still decodes.`;
  $("map-help").textContent = atlas
    ? `${atlas.labels.length} real digits ${atlas.source.set === "test_data" ? "from the test set" : "held out from training"}, coloured by their true label; rings show each digit's spread (the report's latent maps, section 5: tight, separate clusters mean the code keeps the digit's identity). Hover or drag to decode any point, click to pin it as a path end (arrow keys move a cursor).`
    : "Hover or drag to decode any point; click to pin it as a path end.";
  buildSliders(detail, atlas);
  $("dims").querySelector("h3").textContent = `One slider per latent dimension (${m.latent_dim})`;
  const restored = state.z && state.z.length === m.latent_dim && state.z.every(Number.isFinite) ? state.z : null;
  state.z = restored;
  setSliders(restored || centroids[Number(state.dd)]);
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
  const pinned = restored || state.pins[1] || state.pins[0];
  pin(pinned || centroids[Number(state.dd)], restored ? "sliders" : pinned ? "pinned point" : `centroid of ${state.dd}`);
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
  state[key] = input.value; // what the control holds (a range snaps to its step) is what is shown and sent
  const label = () => {
    if (!outId) return;
    $(outId).textContent = show(input.value);
    if (input.type === "range") input.setAttribute("aria-valuetext", $(outId).textContent);
  };
  label();
  input.addEventListener("input", () => {
    state[key] = input.value;
    label();
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
  const unit = $("sigma-unit");
  unit.value = state.unit;
  unit.addEventListener("change", () => {
    state.unit = unit.value;
    saveState();
    sample();
  });
  $("model").addEventListener("change", (e) => selectModel(e.target.value).catch((err) => showError("map-error", err)));
  $("compare").addEventListener("change", (e) => {
    state.compare = e.target.value;
    saveState();
    compare();
    hitCurve();
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
    state.z = null;
    saveState();
    map.set("cursor", map.toPlane(c));
    pin(c, `centroid of ${state.dd}`);
  });
  $("path-play").addEventListener("click", playPath);
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
  // the legend: one toggle per digit, which shows that digit alone on the map
  const toggles = DIGITS.map((d) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "ghost isolate";
    b.setAttribute("aria-pressed", "false");
    b.setAttribute("aria-label", `show only digit ${d} on the map`);
    const dot = document.createElement("i");
    dot.style.background = COLORS[d];
    b.append(dot, String(d));
    b.addEventListener("click", () => {
      const on = b.getAttribute("aria-pressed") !== "true";
      toggles.forEach((t) => t.querySelector("button").setAttribute("aria-pressed", "false"));
      b.setAttribute("aria-pressed", String(on));
      map.isolate(on ? d : null);
    });
    li.append(b);
    return li;
  });
  $("legend").replaceChildren(...toggles);
  $("map-zoom-in").addEventListener("click", () => map.view(0, 0, 0.67));
  $("map-zoom-out").addEventListener("click", () => map.view(0, 0, 1.5));
  $("map-reset").addEventListener("click", () => map.resetView());
  $("map-download").addEventListener("click", async () => {
    const blob = await new Promise((resolve) => $("map").toBlob(resolve, "image/png"));
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `digitae-${state.model}-map.png`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  });
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
  select.replaceChildren(...models.map((m) => option(m.name, modelLabel(m))));
  // every model's card, for beta in the labels: fetched beside the first view, never delaying it
  Promise.all(models.map(async (m) => cards.set(m.name, await getJson(`/v1/models/${m.name}`))))
    .then(() => {
      [...select.options].forEach((o) => (o.textContent = modelLabel(models.find((m) => m.name === o.value))));
      modelInfo();
      select.dataset.labels = "beta";
    })
    .catch((err) => showError("draw-error", err));
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
