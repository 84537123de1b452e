// The drawing pad (mouse, pen and touch through pointer events) and the other ways in: drop, file picker, paste,
// and example digits (the keyboard alternative). It hands the page either a PNG of the pad or a File.

const SETTLE_MS = 180; // after a stroke ends, wait this long for the next one before asking the API

export class Pad {
  constructor(canvas, { brush, clear, file, dropZone, hint, onImage }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.brush = brush;
    this.hint = hint;
    this.onImage = onImage;
    this.drawing = null;
    this.timer = 0;
    this.blank();
    canvas.addEventListener("pointerdown", (e) => this.start(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    canvas.addEventListener("pointerup", () => this.end());
    canvas.addEventListener("pointercancel", () => this.end());
    clear.addEventListener("click", () => {
      this.blank();
      this.hint.hidden = false;
    });
    file.addEventListener("change", () => {
      if (file.files[0]) this.takeFile(file.files[0]);
      file.value = "";
    });
    dropZone.addEventListener("dragover", (e) => {
      e.preventDefault();
      dropZone.classList.add("over");
    });
    dropZone.addEventListener("dragleave", () => dropZone.classList.remove("over"));
    dropZone.addEventListener("drop", (e) => {
      e.preventDefault();
      dropZone.classList.remove("over");
      const dropped = e.dataTransfer && e.dataTransfer.files[0];
      if (dropped) this.takeFile(dropped);
    });
    document.addEventListener("paste", (e) => {
      const item = [...(e.clipboardData ? e.clipboardData.files : [])][0];
      if (item) this.takeFile(item);
    });
  }

  blank() {
    this.ctx.fillStyle = "#000";
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
  }

  point(e) {
    const r = this.canvas.getBoundingClientRect();
    return [((e.clientX - r.left) / r.width) * this.canvas.width, ((e.clientY - r.top) / r.height) * this.canvas.height];
  }

  start(e) {
    e.preventDefault();
    this.canvas.setPointerCapture(e.pointerId);
    clearTimeout(this.timer);
    if (this.shown) {
      this.blank(); // a picture that came from a file or an example is replaced by the new drawing
      this.shown = false;
    }
    this.hint.hidden = true;
    this.drawing = this.point(e);
    this.dot(this.drawing);
  }

  move(e) {
    if (!this.drawing) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
    for (const ev of events.length ? events : [e]) {
      const p = this.point(ev);
      const ctx = this.ctx;
      ctx.strokeStyle = "#fff";
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.lineWidth = Number(this.brush.value);
      ctx.beginPath();
      ctx.moveTo(...this.drawing);
      ctx.lineTo(...p);
      ctx.stroke();
      this.drawing = p;
    }
  }

  dot([x, y]) {
    this.ctx.fillStyle = "#fff";
    this.ctx.beginPath();
    this.ctx.arc(x, y, Number(this.brush.value) / 2, 0, 2 * Math.PI);
    this.ctx.fill();
  }

  end() {
    if (!this.drawing) return;
    this.drawing = null;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.onImage({ b64: this.png(), label: "your drawing" }), SETTLE_MS);
  }

  png() {
    return this.canvas.toDataURL("image/png").split(",", 2)[1];
  }

  /** Show an image on the pad (fitted, on black) without sending it. */
  async show(url) {
    const img = new Image();
    img.src = url;
    await img.decode();
    this.blank();
    const s = Math.min(this.canvas.width / img.width, this.canvas.height / img.height);
    this.ctx.imageSmoothingEnabled = true;
    this.ctx.drawImage(img, (this.canvas.width - img.width * s) / 2, (this.canvas.height - img.height * s) / 2, img.width * s, img.height * s);
    this.hint.hidden = true;
    this.shown = true;
  }

  /** A file is sent as it is (the API preprocesses it, or says what is wrong with it). */
  takeFile(f) {
    this.onImage({ file: f, label: f.name || "the pasted image" });
  }
}
