// The latent map: held-out digits' codes (the model's atlas) as a scatter, centroids with their spread, and the
// overlays the other panels add (the drawn digit and its posterior, a path, pinned points). For a model with more
// than two dimensions the plane is the atlas's first two principal components; a point of that plane decodes as
// mean + x·pc1 + y·pc2.

// Okabe-Ito's eight colour-blind-safe colours and two of Tol's (wine, olive); centroid discs carry their digit as
// text too, and the legend can isolate one digit, so colour never carries the meaning alone.
export const COLORS = [
  "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7",
  "#56B4E9", "#000000", "#F0E442", "#882255", "#999933",
];
/** The text colour readable on each digit's colour (its centroid disc's label). */
export const INK = COLORS.map((c) => (["#E69F00", "#F0E442", "#56B4E9", "#999933", "#CC79A7"].includes(c) ? "#000" : "#fff"));

const NEIGHBOURS = 12; // real codes averaged to fill in the dimensions a PCA map does not show
const DISC_RADIUS = 10; // a centroid's disc, CSS pixels

/**
 * The top two principal axes of `rows` (n × m), by power iteration with deflation: {mean, axes: [a1, a2],
 * explained: [f1, f2]}, f the share of the total variance along each axis.
 */
export function pca(rows) {
  const m = rows[0].length;
  const mean = new Array(m).fill(0);
  for (const r of rows) for (let i = 0; i < m; i++) mean[i] += r[i] / rows.length;
  const cov = Array.from({ length: m }, () => new Array(m).fill(0));
  for (const r of rows) {
    for (let i = 0; i < m; i++) {
      const di = r[i] - mean[i];
      for (let j = 0; j < m; j++) cov[i][j] += (di * (r[j] - mean[j])) / rows.length;
    }
  }
  const axes = [];
  const variances = [];
  const total = cov.reduce((t, row, i) => t + row[i], 0) || 1;
  for (let k = 0; k < 2; k++) {
    let v = Array.from({ length: m }, (_, i) => 1 + i * 0.1 + k);
    let lambda = 0;
    for (let it = 0; it < 200; it++) {
      const w = cov.map((row) => row.reduce((s, c, j) => s + c * v[j], 0));
      lambda = Math.hypot(...w) || 1;
      v = w.map((x) => x / lambda);
    }
    // Sign convention: the largest component positive, so the map does not flip between reloads.
    const big = v.reduce((a, x, i) => (Math.abs(x) > Math.abs(v[a]) ? i : a), 0);
    if (v[big] < 0) v = v.map((x) => -x);
    axes.push(v);
    variances.push(lambda / total);
    for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) cov[i][j] -= lambda * v[i] * v[j];
  }
  return { mean, axes, explained: variances };
}

const dot = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);

export class LatentMap {
  constructor(canvas, { onHover, onLeave, onClick }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.onHover = onHover;
    this.onLeave = onLeave;
    this.onClick = onClick;
    this.overlays = { drawn: null, path: null, pins: [], cursor: null, samples: null };
    this.isolated = null; // a digit shown alone, or null for all
    this.model = null;
    this.base = null; // the scatter, drawn once per model and size
    this.down = null;
    this.keyPoint = null;
    new ResizeObserver(() => this.resize()).observe(canvas.parentElement);
    canvas.addEventListener("pointermove", (e) => this.pointer(e));
    canvas.addEventListener("pointerdown", (e) => {
      canvas.setPointerCapture(e.pointerId);
      this.down = { x: e.clientX, y: e.clientY, pan: e.shiftKey };
      if (!e.shiftKey) this.pointer(e);
    });
    canvas.addEventListener("pointerup", (e) => {
      const d = this.down;
      this.down = null;
      if (d && d.pan) return;
      if (d && Math.hypot(e.clientX - d.x, e.clientY - d.y) < 6 && this.model) this.onClick(this.latentAt(e));
      if (e.pointerType !== "mouse") this.leave();
    });
    canvas.addEventListener("pointerleave", () => this.leave());
    canvas.addEventListener("keydown", (e) => this.key(e));
    canvas.addEventListener("wheel", (e) => {
      if (!this.model || !(e.ctrlKey || e.metaKey)) return; // a plain wheel scrolls the page
      e.preventDefault(); // ctrl + wheel zooms the map about the pointer
      const r = canvas.getBoundingClientRect();
      this.view(0, 0, e.deltaY > 0 ? 1.25 : 0.8, this.planeAt(e.clientX - r.left, e.clientY - r.top));
    }, { passive: false });
  }

  /** model: {latentDim, centroids: 10 × m, spread: 10 × m, atlas: {codes, labels} | null} */
  setModel(model) {
    this.model = model;
    const rows = model.atlas ? model.atlas.codes : model.centroids;
    this.projection = model.latentDim === 2 ? null : pca(rows.length >= 3 ? rows : model.centroids);
    this.points = model.atlas ? model.atlas.codes.map((z) => this.toPlane(z)) : [];
    // what each real code holds off the plane: a hovered point borrows its nearest codes' mean of it
    this.residuals = this.projection && model.atlas
      ? model.atlas.codes.map((z, i) => { const flat = this.fromPlane(this.points[i]); return z.map((v, j) => v - flat[j]); })
      : null;
    this.centers = model.centroids.map((z) => this.toPlane(z));
    this.radii = model.spread.map((s) => this.planeSpread(s));
    const xs = [...this.points, ...this.centers].map((p) => p[0]).sort((a, b) => a - b);
    const ys = [...this.points, ...this.centers].map((p) => p[1]).sort((a, b) => a - b);
    const q = (v, f) => v[Math.min(v.length - 1, Math.max(0, Math.round(f * (v.length - 1))))];
    const pad = (lo, hi) => {
      const span = hi - lo || 1;
      return [lo - span * 0.08, hi + span * 0.08];
    };
    this.xRange = pad(q(xs, 0.005), q(xs, 0.995));
    this.yRange = pad(q(ys, 0.005), q(ys, 0.995));
    this.home = [this.xRange.slice(), this.yRange.slice()];
    this.keyPoint = null;
    this.overlays = { drawn: null, path: null, pins: [], cursor: null, samples: null };
    this.resize();
  }

  /**
   * Move the view by (dx, dy) in plane units and zoom it by `factor` (< 1 zooms in) about `centre` (a plane point,
   * the view's middle by default).
   */
  view(dx, dy, factor, centre = null) {
    const [cx, cy] = centre || [(this.xRange[0] + this.xRange[1]) / 2, (this.yRange[0] + this.yRange[1]) / 2];
    const scale = (range, c, d) => range.map((v) => c + (v - c) * factor + d);
    this.xRange = scale(this.xRange, cx, dx);
    this.yRange = scale(this.yRange, cy, dy);
    this.base = null;
    this.draw();
  }

  /** Back to the whole map. */
  resetView() {
    [this.xRange, this.yRange] = [this.home[0].slice(), this.home[1].slice()];
    this.base = null;
    this.draw();
  }

  /** The share of the codes' variance along the map's two axes, or null for a 2-D latent (the plane itself). */
  explained() {
    return this.projection ? this.projection.explained : null;
  }

  /** Show only digit `d`'s points and centroid (null: all digits). */
  isolate(d) {
    this.isolated = d;
    this.base = null;
    this.draw();
  }

  /**
   * The full code a plane point stands for. On a 2-D latent, the point itself. On a PCA map: over a centroid's
   * disc, that centroid; elsewhere, the plane point plus the mean off-plane part of the nearest real codes, so the
   * hidden dimensions hold values the data has there (with them at zero, hovering a centroid decoded other digits).
   */
  complete(plane) {
    const flat = this.fromPlane(plane);
    if (!this.projection) return flat;
    const px = this.sx(plane[0]);
    const py = this.sy(plane[1]);
    const discs = this.centers
      .map(([cx, cy], d) => [Math.hypot(this.sx(cx) - px, this.sy(cy) - py), d])
      .filter(([far, d]) => far <= DISC_RADIUS && (this.isolated == null || this.isolated === d))
      .sort((a, b) => a[0] - b[0]);
    if (discs.length) return this.model.centroids[discs[0][1]].slice();
    if (!this.residuals) return flat;
    const near = this.points
      .map(([x, y], i) => [(x - plane[0]) ** 2 + (y - plane[1]) ** 2, i])
      .sort((a, b) => a[0] - b[0])
      .slice(0, NEIGHBOURS);
    return flat.map((v, j) => v + near.reduce((t, [, i]) => t + this.residuals[i][j], 0) / near.length);
  }

  toPlane(z) {
    if (!this.projection) return [z[0], z[1]];
    const c = z.map((v, i) => v - this.projection.mean[i]);
    return [dot(c, this.projection.axes[0]), dot(c, this.projection.axes[1])];
  }

  fromPlane([x, y]) {
    if (!this.projection) return [x, y];
    const { mean, axes } = this.projection;
    return mean.map((m, i) => m + x * axes[0][i] + y * axes[1][i]);
  }

  /** A per-dimension std vector as the (x, y) radii of its ellipse on the plane. */
  planeSpread(s) {
    if (!this.projection) return [s[0], s[1]];
    return this.projection.axes.map((a) => Math.sqrt(a.reduce((t, ai, i) => t + (ai * s[i]) ** 2, 0)));
  }

  resize() {
    const box = this.canvas.parentElement;
    const width = box.clientWidth;
    if (!width) return;
    const height = Math.round(width < 600 ? width * 0.95 : Math.min(width * 0.78, 720));
    const dpr = window.devicePixelRatio || 1;
    this.canvas.style.height = `${height}px`;
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    this.dpr = dpr;
    this.w = width;
    this.h = height;
    this.margin = { left: 44, right: 12, top: 12, bottom: 36 };
    this.base = null;
    this.draw();
  }

  sx(x) {
    const { left, right } = this.margin;
    return left + ((x - this.xRange[0]) / (this.xRange[1] - this.xRange[0])) * (this.w - left - right);
  }

  sy(y) {
    const { top, bottom } = this.margin;
    return this.h - bottom - ((y - this.yRange[0]) / (this.yRange[1] - this.yRange[0])) * (this.h - top - bottom);
  }

  /** Canvas pixel (CSS) -> plane point. */
  planeAt(px, py) {
    const { left, right, top, bottom } = this.margin;
    const x = this.xRange[0] + ((px - left) / (this.w - left - right)) * (this.xRange[1] - this.xRange[0]);
    const y = this.yRange[0] + ((this.h - bottom - py) / (this.h - top - bottom)) * (this.yRange[1] - this.yRange[0]);
    return [x, y];
  }

  latentAt(e) {
    const r = this.canvas.getBoundingClientRect();
    return this.complete(this.planeAt(e.clientX - r.left, e.clientY - r.top));
  }

  /** Where a latent is on the page (CSS pixels relative to the canvas), e.g. to point at a centroid. */
  screenOf(z) {
    const [x, y] = this.toPlane(z);
    return [this.sx(x), this.sy(y)];
  }

  pointer(e) {
    if (!this.model) return;
    if (this.down && this.down.pan) {
      // shift + drag pans the view
      const [x0, y0] = this.planeAt(this.down.x, this.down.y);
      const [x1, y1] = this.planeAt(e.clientX, e.clientY);
      this.view(x0 - x1, y0 - y1, 1);
      this.down.x = e.clientX;
      this.down.y = e.clientY;
      return;
    }
    if (e.pointerType !== "mouse" && !this.down) return;
    const r = this.canvas.getBoundingClientRect();
    const px = e.clientX - r.left;
    const py = e.clientY - r.top;
    const plane = this.planeAt(px, py);
    this.overlays.cursor = plane;
    this.draw();
    this.onHover(this.complete(plane), { x: px, y: py, time: performance.now() });
  }

  leave() {
    this.overlays.cursor = null;
    this.draw();
    this.onLeave();
  }

  key(e) {
    if (!this.model) return;
    const steps = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] };
    if (e.key in steps) {
      e.preventDefault();
      const p = this.keyPoint || [(this.xRange[0] + this.xRange[1]) / 2, (this.yRange[0] + this.yRange[1]) / 2];
      const [dx, dy] = steps[e.key];
      const step = e.shiftKey ? 0.2 : 0.04;
      this.keyPoint = [
        p[0] + dx * step * (this.xRange[1] - this.xRange[0]),
        p[1] + dy * step * (this.yRange[1] - this.yRange[0]),
      ];
      this.overlays.cursor = this.keyPoint;
      this.draw();
      this.onHover(this.complete(this.keyPoint), {
        x: this.sx(this.keyPoint[0]), y: this.sy(this.keyPoint[1]), time: performance.now(),
      });
    } else if ((e.key === "Enter" || e.key === " ") && this.keyPoint) {
      e.preventDefault();
      this.onClick(this.complete(this.keyPoint));
    } else if (e.key === "Escape") {
      this.leave();
    }
  }

  set(name, value) {
    this.overlays[name] = value;
    this.draw();
  }

  drawBase() {
    const canvas = document.createElement("canvas");
    canvas.width = this.canvas.width;
    canvas.height = this.canvas.height;
    const ctx = canvas.getContext("2d");
    ctx.scale(this.dpr, this.dpr);
    const { left, right, top, bottom } = this.margin;
    ctx.fillStyle = "#fbfcfe";
    ctx.fillRect(left, top, this.w - left - right, this.h - top - bottom);
    // axes and ticks
    ctx.strokeStyle = "#d5dbe5";
    ctx.fillStyle = "#5b6472";
    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    for (const [range, horizontal] of [[this.xRange, true], [this.yRange, false]]) {
      for (const t of ticks(range[0], range[1], horizontal ? 6 : 5)) {
        ctx.beginPath();
        if (horizontal) {
          const x = this.sx(t);
          ctx.moveTo(x, top);
          ctx.lineTo(x, this.h - bottom);
          ctx.textAlign = "center";
          ctx.fillText(fmt(t), x, this.h - bottom + 14);
        } else {
          const y = this.sy(t);
          ctx.moveTo(left, y);
          ctx.lineTo(this.w - right, y);
          ctx.textAlign = "right";
          ctx.fillText(fmt(t), left - 6, y + 4);
        }
        ctx.stroke();
      }
    }
    ctx.fillStyle = "#3a4350";
    ctx.font = "12px system-ui, sans-serif";
    ctx.textAlign = "center";
    const share = (k) => `PC ${k + 1} (${Math.round(100 * this.projection.explained[k])}% of variance)`;
    const [xl, yl] = this.projection ? [share(0), share(1)] : ["z₁", "z₂"];
    ctx.fillText(xl, left + (this.w - left - right) / 2, this.h - 6);
    ctx.save();
    ctx.translate(12, top + (this.h - top - bottom) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(yl, 0, 0);
    ctx.restore();
    // the digits
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, this.w - left - right, this.h - top - bottom);
    ctx.clip();
    const labels = this.model.atlas ? this.model.atlas.labels : [];
    const shown = (d) => this.isolated == null || this.isolated === d;
    this.points.forEach(([x, y], i) => {
      ctx.globalAlpha = shown(labels[i]) ? 0.55 : 0.06;
      ctx.fillStyle = COLORS[labels[i]];
      ctx.beginPath();
      ctx.arc(this.sx(x), this.sy(y), 2.3, 0, 2 * Math.PI);
      ctx.fill();
    });
    ctx.globalAlpha = 1;
    // centroids: 1-sd spread ellipse, then a labelled disc
    this.centers.forEach(([x, y], d) => {
      if (!shown(d)) return;
      const [rx, ry] = this.radii[d];
      ctx.strokeStyle = COLORS[d];
      ctx.lineWidth = 1.5;
      ctx.setLineDash([4, 3]);
      ctx.beginPath();
      ctx.ellipse(this.sx(x), this.sy(y), Math.abs(this.sx(x + rx) - this.sx(x)), Math.abs(this.sy(y + ry) - this.sy(y)), 0, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.setLineDash([]);
    });
    this.centers.forEach(([x, y], d) => {
      if (!shown(d)) return;
      ctx.fillStyle = COLORS[d];
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(this.sx(x), this.sy(y), DISC_RADIUS, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
      ctx.fillStyle = INK[d];
      ctx.font = "bold 12px system-ui, sans-serif";
      ctx.textAlign = "center";
      ctx.fillText(String(d), this.sx(x), this.sy(y) + 4);
    });
    ctx.restore();
    return canvas;
  }

  draw() {
    if (!this.model || !this.w) return;
    if (!this.base) this.base = this.drawBase();
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.drawImage(this.base, 0, 0);
    ctx.scale(this.dpr, this.dpr);
    const { path, drawn, pins, cursor, samples } = this.overlays;
    for (const z of samples || []) {
      const [x, y] = this.screenOf(z);
      triangle(ctx, x, y);
    }
    if (path && path.length) {
      ctx.strokeStyle = "#111827";
      ctx.lineWidth = 2;
      ctx.beginPath();
      path.forEach((z, i) => {
        const [x, y] = this.screenOf(z);
        if (i) ctx.lineTo(x, y);
        else ctx.moveTo(x, y);
      });
      ctx.stroke();
      ctx.fillStyle = "#111827";
      for (const z of path) {
        const [x, y] = this.screenOf(z);
        ctx.beginPath();
        ctx.arc(x, y, 3, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
    pins.forEach((z, i) => {
      if (!z) return;
      const [x, y] = this.screenOf(z);
      marker(ctx, x, y, "#111827", i === 0 ? "A" : "B");
    });
    if (drawn) {
      const [x, y] = this.screenOf(drawn.mu);
      if (drawn.sigma) {
        const [rx, ry] = this.planeSpread(drawn.sigma);
        const [cx, cy] = this.toPlane(drawn.mu);
        ctx.fillStyle = "rgba(17, 24, 39, 0.12)";
        ctx.strokeStyle = "#111827";
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        ctx.ellipse(x, y, Math.max(2, Math.abs(this.sx(cx + rx) - x)), Math.max(2, Math.abs(this.sy(cy + ry) - y)), 0, 0, 2 * Math.PI);
        ctx.fill();
        ctx.stroke();
      }
      star(ctx, x, y);
    }
    if (cursor) {
      const x = this.sx(cursor[0]);
      const y = this.sy(cursor[1]);
      ctx.strokeStyle = "#111827";
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.arc(x, y, 6, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }
}

function triangle(ctx, x, y) {
  ctx.fillStyle = "#fff";
  ctx.strokeStyle = "#111827";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  ctx.moveTo(x, y - 6);
  ctx.lineTo(x + 5.5, y + 4);
  ctx.lineTo(x - 5.5, y + 4);
  ctx.closePath();
  ctx.fill();
  ctx.stroke();
}

function marker(ctx, x, y, color, text) {
  ctx.fillStyle = "#fff";
  ctx.strokeStyle = color;
  ctx.lineWidth = 2;
  ctx.beginPath();
  ctx.rect(x - 8, y - 8, 16, 16);
  ctx.fill();
  ctx.stroke();
  ctx.fillStyle = color;
  ctx.font = "bold 11px system-ui, sans-serif";
  ctx.textAlign = "center";
  ctx.fillText(text, x, y + 4);
}

function star(ctx, x, y) {
  ctx.fillStyle = "#ffd43b";
  ctx.strokeStyle = "#111827";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  for (let i = 0; i < 10; i++) {
    const r = i % 2 ? 4.5 : 11;
    const a = -Math.PI / 2 + (i * Math.PI) / 5;
    ctx.lineTo(x + r * Math.cos(a), y + r * Math.sin(a));
  }
  ctx.closePath();
  ctx.fill();
  ctx.stroke();
}

function ticks(lo, hi, count) {
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) out.push(Math.abs(t) < step / 1e6 ? 0 : t);
  return out;
}

const fmt = (t) => (Math.abs(t) >= 100 ? t.toFixed(0) : String(+t.toFixed(2)));
