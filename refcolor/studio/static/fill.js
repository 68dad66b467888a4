// refcolor studio: the Fill tab, a bucket fill over the areas the drawing's own lines enclose (the
// first step of colouring a comic or a cel: "flats"). The server finds the areas once per sketch
// and gap setting (POST /api/line_regions, refcolor.ops.line_regions); every click is then filled
// here, on the label map, without a round trip.
//
// The fills are kept as the list of clicks (a point and a colour), not as painted pixels: undo and
// redo move along that list, and when the gap slider changes the areas, the same clicks are
// replayed on the new label map (a later click wins where two areas merged), as if the artist had
// made them there.

import {
  $,
  ColorPanel,
  DEBOUNCE_MS,
  Progress,
  Runner,
  STAGE_SIDE,
  contentRect,
  fileTarget,
  historyKey,
  imageData,
  loadImage,
  rgbToHex,
  saveBlob,
  stem,
} from "./common.js";

const NONE = -1; // a region without a fill
const GAP_DEBOUNCE_MS = 4 * DEBOUNCE_MS; // the slider refetches once it rests, not at every step

// The label map's PNG: region number = red + 256 * green + 65536 * blue.
function decodeLabels(img) {
  const d = imageData(img).data;
  const out = new Int32Array(d.length / 4);
  for (let p = 0, i = 0; p < out.length; p++, i += 4) out[p] = d[i] | (d[i + 1] << 8) | (d[i + 2] << 16);
  return out;
}

// A gray PNG's levels (red channel), or with `mask` 1 where it is white (the line mask).
function decodeGray(img, mask = false) {
  const d = imageData(img).data;
  const out = new Uint8Array(d.length / 4);
  for (let p = 0, i = 0; p < out.length; p++, i += 4) out[p] = mask ? (d[i] > 127 ? 1 : 0) : d[i];
  return out;
}

// x * a / 255 rounded: a colour multiplied by the line drawing's gray level.
function multiply(x, a) {
  return Math.round((x * a) / 255);
}

export class FillTab {
  constructor() {
    this.file = null; // the sketch File (sent again when the gap changes)
    this.pending = null;
    this.seq = 0; // the newest region request; older answers are dropped
    this.asked = null; // the gap of the areas shown or on their way (null: ask again)
    this.width = 0;
    this.height = 0;
    this.count = 0;
    this.labels = null; // Int32Array(W * H): each pixel's region (0..count-1)
    this.lines = null; // Uint8Array(W * H): 1 on line pixels (transparent in the flats layer)
    this.art = null; // Uint8Array(W * H): the line drawing's gray level (multiplied over the flats)
    this.index = null; // Int32Array: the full-size pixel under each stage pixel
    this.ops = []; // {x, y, color: "#rrggbb" | null (erase)} or {clear: true}, in order
    this.done = 0; // ops[0 .. done) are in effect; the rest can be redone
    this.colors = new Int32Array(0); // per region: 0xrrggbb, or NONE
    this.hover = NONE;
    this.erasing = false;
    this.timer = null;
    this.runner = new Runner();
    this.stage = $("fill-stage");
    this.progress = new Progress($("fill-progress"));
    this.panel = new ColorPanel("fill", {
      apply: () => this.setEraser(false), // choosing a colour means painting with it
      message: (m, e) => this.message(m, e),
    });
    this.bind();
    this.renderControls();
  }

  bind() {
    fileTarget($("fill-drop"), $("fill-sketch"), (f) => this.loadSketch(f), (m) => this.message(m, true));
    this.stage.addEventListener("click", (e) => this.clickStage(e));
    this.stage.addEventListener("mousemove", (e) => this.hoverStage(e));
    this.stage.addEventListener("mouseleave", () => this.setHover(NONE));
    const gap = $("fill-gap");
    gap.addEventListener("input", () => {
      this.showGap();
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.refetch(), GAP_DEBOUNCE_MS);
    });
    gap.addEventListener("change", () => this.refetch());
    $("fill-eraser").addEventListener("click", () => this.setEraser(!this.erasing));
    $("fill-undo").addEventListener("click", () => this.undo());
    $("fill-redo").addEventListener("click", () => this.redo());
    $("fill-clear").addEventListener("click", () => this.clear());
    $("fill-download-flats").addEventListener("click", () => this.download("flats"));
    $("fill-download-picture").addEventListener("click", () => this.download("filled"));
    this.showGap();
  }

  // The server's limits for /api/line_regions (from /api/health).
  configure({ max_gap: maxGap }) {
    if (Number.isInteger(maxGap) && maxGap >= 0) {
      $("fill-gap").max = String(maxGap);
      this.showGap();
    }
  }

  message(text, isError = false) {
    const el = $("fill-message");
    el.textContent = text;
    el.classList.toggle("error", isError);
  }

  paste(file) {
    this.loadSketch(file);
  }

  gap() {
    return Number($("fill-gap").value);
  }

  showGap() {
    const gap = this.gap();
    $("fill-gap-value").textContent = gap ? `${gap} px` : "off";
  }

  setEraser(on) {
    this.erasing = on;
    $("fill-eraser").setAttribute("aria-pressed", String(on));
    this.stage.classList.toggle("erasing", on);
    if (this.hover !== NONE) this.renderStage();
  }

  // ---- regions from the server
  // A new sketch replaces the current one (and its fills) only once its regions arrived: a failed
  // upload leaves the work in progress as it was.
  loadSketch(file) {
    this.pending = file;
    this.message("");
    return this.fetchRegions(file, true);
  }

  // The areas for the slider's gap, unless they are shown or on their way already (the slider's
  // debounced `input` and its `change` both land here).
  refetch() {
    clearTimeout(this.timer);
    if (!this.file || this.gap() === this.asked) return;
    this.fetchRegions(this.file, false);
  }

  async fetchRegions(file, fresh) {
    const gap = this.gap();
    const id = ++this.seq;
    const asked = this.asked;
    this.asked = gap;
    const form = new FormData();
    form.append("sketch", file, file.name || "sketch.png");
    form.append("gap", String(gap));
    this.progress.busy(gap ? `Finding the enclosed areas, closing gaps up to ${gap} px…` : "Finding the enclosed areas…");
    try {
      const result = await this.runner.run("/api/line_regions", form, { asJson: true });
      if (!result || id !== this.seq) return;
      const data = result.json;
      const images = await Promise.all([data.labels, data.line_mask, data.line_art].map(loadImage));
      if (id !== this.seq) return; // a newer sketch or gap came meanwhile
      const [width, height] = data.size;
      for (const img of images) {
        if (img.naturalWidth !== width || img.naturalHeight !== height) {
          throw new Error(`the server's maps are ${img.naturalWidth}x${img.naturalHeight}, expected ${width}x${height}`);
        }
      }
      const labels = decodeLabels(images[0]);
      if (fresh) {
        this.file = file;
        this.ops = [];
        this.done = 0;
      }
      this.width = width;
      this.height = height;
      this.count = data.count;
      this.labels = labels;
      this.lines = decodeGray(images[1], true);
      this.art = decodeGray(images[2]);
      this.layout();
      this.stage.dataset.gap = String(data.gap);
      this.stage.dataset.regions = String(data.count);
      $("fill-empty").hidden = true;
      this.resolve();
      this.hover = NONE;
      this.render();
      const regions = `${data.count} area${data.count === 1 ? "" : "s"}`;
      this.progress.done(result.response, data.gap ? `${regions}, gaps up to ${data.gap} px closed` : regions);
    } catch (err) {
      if (err.name === "AbortError" || id !== this.seq) return;
      this.progress.fail(err.message);
      this.message(err.message, true);
      // The areas shown are still those of the last answer: a new sketch that failed leaves them
      // (and their gap) as they were; a failed gap change may be retried.
      this.asked = fresh ? asked : null;
    }
  }

  // The stage is drawn at most STAGE_SIDE px wide or high (a 4096 px sketch would cost 16 M pixels
  // of JavaScript per redraw); `index` maps each stage pixel to its full-size pixel (nearest).
  layout() {
    const scale = Math.min(1, STAGE_SIDE / Math.max(this.width, this.height));
    const W = Math.max(1, Math.round(this.width * scale));
    const H = Math.max(1, Math.round(this.height * scale));
    this.stage.width = W;
    this.stage.height = H;
    this.index = new Int32Array(W * H);
    for (let y = 0; y < H; y++) {
      const row = Math.min(this.height - 1, Math.floor(((y + 0.5) * this.height) / H)) * this.width;
      for (let x = 0; x < W; x++) {
        this.index[y * W + x] = row + Math.min(this.width - 1, Math.floor(((x + 0.5) * this.width) / W));
      }
    }
  }

  // ---- fills
  // Each region's colour from the clicks in effect, replayed in order on the current label map.
  resolve() {
    const colors = new Int32Array(this.count).fill(NONE);
    for (let k = 0; k < this.done; k++) {
      const op = this.ops[k];
      if (op.clear) colors.fill(NONE);
      else colors[this.regionAt(op.x, op.y)] = op.color === null ? NONE : parseInt(op.color.slice(1), 16);
    }
    this.colors = colors;
  }

  regionAt(x, y) {
    return this.labels[y * this.width + x];
  }

  // The full-size pixel under a mouse event, or null outside the picture.
  pixelAt(e) {
    const rect = contentRect(this.stage);
    const x = Math.floor(((e.clientX - rect.left) * this.width) / rect.width);
    const y = Math.floor(((e.clientY - rect.top) * this.height) / rect.height);
    return x < 0 || y < 0 || x >= this.width || y >= this.height ? null : [x, y];
  }

  clickStage(e) {
    if (!this.labels) return;
    const at = this.pixelAt(e);
    if (!at) return;
    const region = this.regionAt(...at);
    if (e.altKey) {
      // Alt+click picks the fill under the cursor, as a paint program's colour picker does.
      const c = this.colors[region];
      if (c !== NONE) this.panel.choose(rgbToHex([(c >> 16) & 255, (c >> 8) & 255, c & 255]));
      return;
    }
    const color = this.erasing ? null : this.panel.value();
    const wanted = color === null ? NONE : parseInt(color.slice(1), 16);
    if (this.colors[region] === wanted) return; // nothing would change: no history step
    this.push({ x: at[0], y: at[1], color });
  }

  hoverStage(e) {
    if (!this.labels) return;
    const at = this.pixelAt(e);
    this.setHover(at ? this.regionAt(...at) : NONE);
  }

  setHover(region) {
    if (region === this.hover) return;
    this.hover = region;
    this.renderStage();
  }

  push(op) {
    this.ops = this.ops.slice(0, this.done);
    this.ops.push(op);
    this.done = this.ops.length;
    this.resolve();
    this.render();
  }

  clear() {
    if (this.colors.some((c) => c !== NONE)) this.push({ clear: true });
  }

  undo() {
    if (this.done === 0) return;
    this.done -= 1;
    this.resolve();
    this.render();
  }

  redo() {
    if (this.done >= this.ops.length) return;
    this.done += 1;
    this.resolve();
    this.render();
  }

  key(e) {
    if (historyKey(e, this)) return;
    if (e.target instanceof HTMLInputElement && e.target.type !== "checkbox" && e.target.type !== "range") return;
    if (!(e.ctrlKey || e.metaKey || e.altKey) && (e.key === "e" || e.key === "E")) this.setEraser(!this.erasing);
  }

  // ---- pictures
  // The flats layer at full size: each filled region's colour, transparent on the lines and where
  // nothing is filled (the layer an artist paints shading on, under the line art).
  flatsLayer() {
    const image = new ImageData(this.width, this.height);
    const d = image.data;
    for (let p = 0, i = 0; p < this.labels.length; p++, i += 4) {
      const c = this.colors[this.labels[p]];
      if (c === NONE || this.lines[p]) continue;
      d[i] = (c >> 16) & 255;
      d[i + 1] = (c >> 8) & 255;
      d[i + 2] = c & 255;
      d[i + 3] = 255;
    }
    return image;
  }

  // The picture at full size: the flats over white paper, the line drawing multiplied on top.
  picture() {
    const image = new ImageData(this.width, this.height);
    const d = image.data;
    for (let p = 0, i = 0; p < this.labels.length; p++, i += 4) {
      const c = this.lines[p] ? NONE : this.colors[this.labels[p]];
      const a = this.art[p];
      d[i] = c === NONE ? a : multiply((c >> 16) & 255, a);
      d[i + 1] = c === NONE ? a : multiply((c >> 8) & 255, a);
      d[i + 2] = c === NONE ? a : multiply(c & 255, a);
      d[i + 3] = 255;
    }
    return image;
  }

  async download(kind) {
    if (!this.labels) return;
    try {
      const canvas = document.createElement("canvas");
      canvas.width = this.width;
      canvas.height = this.height;
      canvas.getContext("2d").putImageData(kind === "flats" ? this.flatsLayer() : this.picture(), 0, 0);
      const blob = await new Promise((resolve, reject) =>
        canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("the browser could not encode the PNG"))), "image/png"),
      );
      saveBlob(blob, `${stem(this.file.name)}_${kind}.png`);
    } catch (err) {
      this.message(err.message, true);
    }
  }

  // ---- drawing
  render() {
    this.renderStage();
    this.renderControls();
  }

  renderControls() {
    const loaded = Boolean(this.labels);
    const filled = loaded ? this.colors.reduce((n, c) => n + (c !== NONE), 0) : 0;
    $("fill-undo").disabled = this.done === 0;
    $("fill-redo").disabled = this.done >= this.ops.length;
    $("fill-clear").disabled = filled === 0;
    $("fill-download-flats").disabled = !loaded;
    $("fill-download-picture").disabled = !loaded;
    this.stage.dataset.filled = String(filled);
    $("fill-count").textContent = loaded ? `${filled} of ${this.count} areas filled` : "";
  }

  // The picture as downloaded, reduced to the stage; the area under the cursor previewed in the
  // current colour (or checkered white when erasing), so a fill that would leak shows before the click.
  renderStage() {
    if (!this.labels) return;
    const W = this.stage.width;
    const H = this.stage.height;
    const ctx = this.stage.getContext("2d");
    const image = ctx.createImageData(W, H);
    const d = image.data;
    const hover = this.hover;
    const preview = this.erasing ? NONE : parseInt(this.panel.value().slice(1), 16);
    for (let p = 0, i = 0; p < this.index.length; p++, i += 4) {
      const f = this.index[p];
      const region = this.labels[f];
      let c = this.lines[f] ? NONE : this.colors[region];
      const a = this.art[f];
      let r = c === NONE ? a : multiply((c >> 16) & 255, a);
      let g = c === NONE ? a : multiply((c >> 8) & 255, a);
      let b = c === NONE ? a : multiply(c & 255, a);
      if (region === hover && !this.lines[f]) {
        c = preview;
        const checker = (((p % W) >> 2) + ((p / W) >> 2)) & 1 ? 255 : 215;
        r = (r + (c === NONE ? checker : multiply((c >> 16) & 255, a))) >> 1;
        g = (g + (c === NONE ? checker : multiply((c >> 8) & 255, a))) >> 1;
        b = (b + (c === NONE ? checker : multiply(c & 255, a))) >> 1;
      }
      d[i] = r;
      d[i + 1] = g;
      d[i + 2] = b;
      d[i + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
  }
}
