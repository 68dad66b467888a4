// refcolor studio: the page's logic, hand-written, no dependencies (ES modules: common.js holds
// what the tabs share, fill.js the Fill tab). It talks to the server only through the documented
// API (/api/health, /api/regions, /api/colorize, /api/line_regions).

import {
  $,
  ColorPanel,
  Compare,
  DEBOUNCE_MS,
  IMAGE_TYPES,
  Progress,
  Runner,
  STAGE_SIDE,
  contentRect,
  fileTarget,
  hexToRgb,
  historyKey,
  imageData,
  loadImage,
  parseColorEntry,
  post,
  saveBlob,
  setDownload,
  stem,
} from "./common.js";
import { FillTab } from "./fill.js";

// ------------------------------------------------------------------ Guided tab

class GuidedTab {
  constructor() {
    this.sketch = null; // the uploaded File, sent with every request
    this.regions = []; // the server's regions, priority order
    this.labels = null; // ImageData: red + 256 * green = region number of each pixel
    this.overlay = null;
    this.colors = []; // entry i: "#rrggbb" of region i + 1 (the `refcolor guide --colors` format)
    this.history = [[]];
    this.index = 0;
    this.selected = 1;
    this.runner = new Runner();
    this.timer = null;
    this.compare = new Compare($("guide-compare"));
    this.progress = new Progress($("guide-progress"));
    this.stage = $("guide-stage");
    this.colorPanel = new ColorPanel("guide", { apply: (hex) => this.apply(hex), message: (m, e) => this.message(m, e) });
    this.bind();
    this.renderControls();
  }

  bind() {
    fileTarget($("guide-drop"), $("guide-sketch"), (f) => this.loadSketch(f), (m) => this.message(m, true));
    this.stage.addEventListener("click", (e) => this.clickStage(e));
    $("guide-undo").addEventListener("click", () => this.undo());
    $("guide-redo").addEventListener("click", () => this.redo());
    $("guide-reset").addEventListener("click", () => this.setColors([], "reset"));
    $("guide-update").addEventListener("click", () => this.update());
    $("guide-auto").addEventListener("change", () => {
      if ($("guide-auto").checked) this.schedule();
    });
    $("guide-flat").addEventListener("change", () => this.schedule(0));
    $("guide-export").addEventListener("click", () => this.exportColors());
    $("guide-import").addEventListener("change", () => {
      const file = $("guide-import").files[0];
      $("guide-import").value = "";
      if (file) this.importColors(file);
    });
  }

  message(text, isError = false) {
    const el = $("guide-message");
    el.textContent = text;
    el.classList.toggle("error", isError);
  }

  paste(file) {
    this.loadSketch(file);
  }

  // ---- sketch and regions
  // The new sketch replaces the current one only once its regions arrived: a failed upload
  // leaves the work in progress as it was.
  async loadSketch(file) {
    this.pending = file;
    this.message("");
    this.progress.busy("Finding the regions…");
    const form = new FormData();
    form.append("sketch", file, file.name || "sketch.png");
    try {
      const response = await post("/api/regions", form);
      const data = await response.json();
      if (this.pending !== file) return; // another sketch came meanwhile
      const [overlay, labels] = await Promise.all([loadImage(data.overlay), loadImage(data.labels)]);
      if (this.pending !== file) return;
      this.sketch = file;
      this.compare.setBefore(URL.createObjectURL(file));
      this.compare.setAfter(null);
      this.regions = data.regions;
      this.overlay = overlay;
      this.labels = imageData(labels);
      // The stage is drawn at most STAGE_SIDE px wide or high: a 4096 px sketch would otherwise
      // cost 16 M pixels of JavaScript per redraw. Clicks map back to the full-size label map.
      const scale = Math.min(1, STAGE_SIDE / Math.max(overlay.naturalWidth, overlay.naturalHeight));
      this.stage.width = Math.max(1, Math.round(overlay.naturalWidth * scale));
      this.stage.height = Math.max(1, Math.round(overlay.naturalHeight * scale));
      $("guide-empty").hidden = true;
      this.history = [[]];
      this.index = 0;
      this.colors = [];
      this.selected = 1;
      this.progress.done(response, `${data.regions.length} regions`);
      this.render();
      this.schedule(0);
    } catch (err) {
      if (this.pending !== file) return;
      this.progress.fail(err.message);
      this.message(err.message, true);
    }
  }

  regionAt(x, y) {
    if (!this.labels) return 0;
    const i = 4 * (y * this.labels.width + x);
    return this.labels.data[i] + 256 * this.labels.data[i + 1];
  }

  clickStage(e) {
    if (!this.labels) return;
    const rect = contentRect(this.stage);
    const { width, height } = this.labels;
    const x = Math.floor(((e.clientX - rect.left) * width) / rect.width);
    const y = Math.floor(((e.clientY - rect.top) * height) / rect.height);
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    const region = this.regionAt(x, y);
    if (region) this.select(region);
  }

  // Regions are coloured in the model's priority order: 1..(coloured + 1) may be chosen.
  select(region) {
    if (region < 1 || region > this.regions.length) return false;
    const next = this.colors.length + 1;
    if (region > next) {
      this.message(`Region ${region} comes later: GuidingPainter asks for colours in order, region ${next} is next.`, true);
      return false;
    }
    this.selected = region;
    this.message("");
    this.render();
    return true;
  }

  apply(hex) {
    if (!this.regions.length) {
      this.message("Load a sketch first.", true);
      return;
    }
    const region = this.selected;
    if (region > this.colors.length + 1) return;
    const colors = this.colors.slice();
    colors[region - 1] = hex;
    this.setColors(colors, `region ${region}`);
    if (region === this.colors.length && region < this.regions.length) this.selected = region + 1;
    this.render();
  }

  // ---- history: every change of the colour list is one step
  setColors(colors, _why) {
    if (JSON.stringify(colors) === JSON.stringify(this.colors)) return;
    this.history = this.history.slice(0, this.index + 1);
    this.history.push(colors);
    this.index = this.history.length - 1;
    this.colors = colors;
    this.selected = Math.min(this.selected, this.colors.length + 1, Math.max(1, this.regions.length));
    this.render();
    this.schedule();
  }

  undo() {
    if (this.index === 0) return;
    this.index -= 1;
    this.restore();
  }

  redo() {
    if (this.index >= this.history.length - 1) return;
    this.index += 1;
    this.restore();
  }

  restore() {
    this.colors = this.history[this.index].slice();
    this.selected = Math.min(this.colors.length + 1, Math.max(1, this.regions.length));
    this.render();
    this.schedule();
  }

  // ---- import / export in the `refcolor guide --colors` format
  exportColors() {
    const blob = new Blob([JSON.stringify(this.colors) + "\n"], { type: "application/json" });
    saveBlob(blob, `${stem(this.sketch && this.sketch.name)}_colors.json`);
  }

  async importColors(file) {
    try {
      let data;
      try {
        data = JSON.parse(await file.text());
      } catch (err) {
        throw new Error(`${file.name}: not valid JSON`);
      }
      if (!Array.isArray(data)) throw new Error(`${file.name}: expected a JSON list of colours`);
      const colors = data.map(parseColorEntry);
      if (this.regions.length && colors.length > this.regions.length) {
        throw new Error(`${file.name}: ${colors.length} colours but the sketch has ${this.regions.length} regions`);
      }
      this.setColors(colors, "import");
      this.selected = Math.min(colors.length + 1, Math.max(1, this.regions.length)); // the next region
      this.render();
      this.message(`Imported ${colors.length} colours.`);
    } catch (err) {
      this.message(err.message, true);
    }
  }

  // ---- server
  schedule(delay = DEBOUNCE_MS) {
    if (!this.sketch || !this.regions.length) return;
    if (!$("guide-auto").checked) {
      this.progress.stale("Colours changed: press Update.");
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.update(), delay);
  }

  async update() {
    if (!this.sketch) {
      this.message("Load a sketch first.", true);
      return;
    }
    clearTimeout(this.timer);
    const form = new FormData();
    form.append("mode", "guide");
    form.append("sketch", this.sketch, this.sketch.name || "sketch.png");
    form.append("colors", JSON.stringify(this.colors));
    const flat = $("guide-flat").checked;
    form.append("flat", String(flat));
    const count = this.colors.length;
    this.progress.busy(`Colorizing with ${count} colour${count === 1 ? "" : "s"}…`);
    try {
      const result = await this.runner.run("/api/colorize", form);
      if (!result) return;
      const name = `${stem(this.sketch.name)}_${flat ? "flat" : "colorized"}.png`;
      const url = setDownload($("guide-download"), result.blob, name);
      this.compare.setAfter(url);
      $("guide-compare").dataset.flat = String(flat);
      $("guide-compare").dataset.colors = JSON.stringify(this.colors.slice(0, count));
      this.progress.done(result.response, `${count} colour${count === 1 ? "" : "s"}`);
    } catch (err) {
      if (err.name === "AbortError") return;
      this.progress.fail(err.message);
    }
  }

  // ---- drawing
  render() {
    this.renderStage();
    this.renderList();
    this.renderControls();
  }

  renderControls() {
    const next = this.colors.length + 1;
    $("guide-current").textContent = this.regions.length ? String(this.selected) : "–";
    $("guide-next").textContent = this.regions.length
      ? next <= this.regions.length
        ? `(next: ${next} of ${this.regions.length})`
        : `(all ${this.regions.length} coloured)`
      : "";
    const hex = this.colors[this.selected - 1];
    if (hex) this.colorPanel.show(hex);
    $("guide-undo").disabled = this.index === 0;
    $("guide-redo").disabled = this.index >= this.history.length - 1;
    $("guide-reset").disabled = this.colors.length === 0;
  }

  renderList() {
    const list = $("guide-regions");
    list.replaceChildren();
    const next = this.colors.length + 1;
    for (const region of this.regions) {
      const n = region.rank;
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "region";
      button.dataset.region = String(n);
      button.disabled = n > next;
      button.classList.toggle("selected", n === this.selected);
      button.classList.toggle("next", n === next);
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      if (this.colors[n - 1]) swatch.style.setProperty("background", this.colors[n - 1]);
      else swatch.classList.add("none");
      button.append(String(n), swatch);
      button.title = `region ${n}: ${region.pixels} pixels` + (this.colors[n - 1] ? `, ${this.colors[n - 1]}` : "");
      button.addEventListener("click", () => this.select(n));
      item.append(button);
      list.append(item);
    }
  }

  // The overlay, each coloured region tinted with its colour, the selected one outlined.
  renderStage() {
    if (!this.overlay) return;
    const ctx = this.stage.getContext("2d");
    const W = this.stage.width;
    const H = this.stage.height;
    ctx.drawImage(this.overlay, 0, 0, W, H);
    const labels = this.labels;
    // The region number under each stage pixel (nearest sample of the full-size label map).
    const region = new Int32Array(W * H);
    for (let y = 0; y < H; y++) {
      const row = Math.min(labels.height - 1, Math.floor(((y + 0.5) * labels.height) / H)) * labels.width;
      for (let x = 0; x < W; x++) {
        const i = 4 * (row + Math.min(labels.width - 1, Math.floor(((x + 0.5) * labels.width) / W)));
        region[y * W + x] = labels.data[i] + 256 * labels.data[i + 1];
      }
    }
    const tint = ctx.getImageData(0, 0, W, H);
    const px = tint.data;
    const colors = this.colors.map(hexToRgb);
    const selected = this.selected;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const p = y * W + x;
        const i = 4 * p;
        const r = region[p];
        const c = colors[r - 1];
        if (c) {
          for (let k = 0; k < 3; k++) px[i + k] = Math.round(0.45 * px[i + k] + 0.55 * c[k] * (px[i + k] / 255));
        }
        if (r === selected) {
          const edge =
            x === 0 || y === 0 || x === W - 1 || y === H - 1 ||
            region[p - 1] !== r || region[p + 1] !== r || region[p - W] !== r || region[p + W] !== r;
          if (edge) {
            px[i] = 255; px[i + 1] = 0; px[i + 2] = 200;
          } else if (!c) {
            px[i] = Math.round(0.7 * px[i] + 0.3 * 255); px[i + 1] = Math.round(0.7 * px[i + 1] + 0.3 * 230); px[i + 2] = Math.round(0.7 * px[i + 2]);
          }
        }
      }
    }
    ctx.putImageData(tint, 0, 0);
  }

  key(e) {
    if (historyKey(e, this)) return;
    if (e.target instanceof HTMLInputElement && e.target.type !== "checkbox" && e.target.type !== "range") return;
    if (!(e.ctrlKey || e.metaKey || e.altKey) && /^[1-9]$/.test(e.key)) this.select(Number(e.key));
  }
}

// ------------------------------------------------------------------ Reference and Exemplar tabs

// Two images in, one colorization out. fields: [[form field, element id prefix], ...].
class PairTab {
  constructor(name, mode, fields) {
    this.name = name;
    this.mode = mode;
    this.fields = fields;
    this.files = {};
    this.runner = new Runner();
    this.compare = new Compare($(`${name}-compare`));
    this.progress = new Progress($(`${name}-progress`));
    for (const field of fields) {
      fileTarget($(`${name}-drop-${field}`), $(`${name}-${field}`), (f) => this.setFile(field, f), (m) => this.message(m, true));
    }
    $(`${name}-update`).addEventListener("click", () => this.update());
    $(`${name}-flat`).addEventListener("change", () => {
      if ($(`${name}-auto`).checked && this.fields.every((f) => this.files[f])) this.update();
    });
  }

  message(text, isError = false) {
    const el = $(`${this.name}-message`);
    el.textContent = text;
    el.classList.toggle("error", isError);
  }

  enable(available, reason) {
    this.available = available;
    $(`panel-${this.name}`).classList.toggle("unavailable", !available);
    for (const field of this.fields) $(`${this.name}-${field}`).disabled = !available;
    $(`${this.name}-update`).disabled = !available;
    $(`${this.name}-flat`).disabled = !available;
    if (!available && reason) this.message(reason);
  }

  paste(file) {
    const missing = this.fields.find((f) => !this.files[f]);
    this.setFile(missing || this.fields[0], file);
  }

  setFile(field, file) {
    if (this.available === false) return;
    this.files[field] = file;
    const url = URL.createObjectURL(file);
    const thumb = $(`${this.name}-${field}-thumb`);
    thumb.src = url;
    thumb.hidden = false;
    if (field === this.fields[0]) {
      this.compare.setBefore(url);
      this.compare.setAfter(null);
    }
    this.message("");
    if ($(`${this.name}-auto`).checked && this.fields.every((f) => this.files[f])) this.update();
  }

  async update() {
    const missing = this.fields.filter((f) => !this.files[f]);
    if (missing.length) {
      this.message(`Choose the ${missing.join(" and ")} image first.`, true);
      return;
    }
    const form = new FormData();
    form.append("mode", this.mode);
    for (const f of this.fields) form.append(f, this.files[f], this.files[f].name || `${f}.png`);
    const flat = $(`${this.name}-flat`).checked;
    form.append("flat", String(flat));
    this.progress.busy("Colorizing…");
    try {
      const result = await this.runner.run("/api/colorize", form);
      if (!result) return;
      const main = this.files[this.fields[0]];
      const name = `${stem(main.name)}_${flat ? "flat" : "colorized"}.png`;
      const url = setDownload($(`${this.name}-download`), result.blob, name);
      this.compare.setAfter(url);
      $(`${this.name}-compare`).dataset.flat = String(flat);
      this.progress.done(result.response, flat ? "Colorized, flat colours" : "Colorized");
    } catch (err) {
      if (err.name === "AbortError") return;
      this.progress.fail(err.message);
    }
  }
}

// ------------------------------------------------------------------ page

class Studio {
  constructor() {
    this.tabs = {
      guide: new GuidedTab(),
      fill: new FillTab(),
      reference: new PairTab("reference", "reference", ["sketch", "reference"]),
      exemplar: new PairTab("exemplar", "exemplar", ["image", "reference"]),
    };
    this.active = "guide";
    for (const button of document.querySelectorAll("[role=tab]")) {
      button.addEventListener("click", () => this.show(button.dataset.tab));
    }
    // Keys go to the tab on screen: each tab keeps its own undo history.
    document.addEventListener("keydown", (e) => {
      const tab = this.tabs[this.active];
      if (tab.key) tab.key(e);
    });
    document.addEventListener("paste", (e) => {
      const item = [...(e.clipboardData ? e.clipboardData.items : [])].find((i) => IMAGE_TYPES.includes(i.type));
      if (!item) return;
      e.preventDefault();
      this.tabs[this.active].paste(item.getAsFile());
    });
    this.health();
  }

  show(name) {
    this.active = name;
    for (const button of document.querySelectorAll("[role=tab]")) {
      const on = button.dataset.tab === name;
      button.setAttribute("aria-selected", String(on));
      $(button.getAttribute("aria-controls")).hidden = !on;
    }
    // The Fill tab starts on the Guided tab's sketch, if it has none of its own yet.
    const { fill, guide } = this.tabs;
    if (name === "fill" && !fill.file && !fill.pending && guide.sketch) fill.loadSketch(guide.sketch);
  }

  async health() {
    const status = $("server-status");
    try {
      const response = await fetch("/api/health");
      const health = await response.json();
      const models = health.models;
      const names = { guide: "Guided", scft: "Reference", exemplar: "Exemplar" };
      status.textContent = Object.entries(names)
        .map(([kind, label]) => `${label} ${models[kind] ? "✓" : "–"}`)
        .join("  ");
      status.dataset.ready = "true";
      // Why a kind is not served, in the server's words (it names the --checkpoint to give).
      const why = (kind) => (health.not_served && health.not_served[kind]) || `no ${kind} model loaded`;
      this.tabs.reference.enable(Boolean(models.scft), `This server has no reference (SCFT) model: ${why("scft")}.`);
      this.tabs.exemplar.enable(Boolean(models.exemplar), "");
      const notice = $("exemplar-unavailable");
      notice.hidden = Boolean(models.exemplar);
      if (!models.exemplar) {
        // The reason as text, its `--checkpoint KIND=PATH` as <code> (kept on one line).
        notice.replaceChildren("This server has no exemplar model: ");
        for (const part of why("exemplar").split(/(--checkpoint \S+)/)) {
          if (!part.startsWith("--checkpoint")) notice.append(part);
          else notice.append(Object.assign(document.createElement("code"), { textContent: part }));
        }
        notice.append(".");
      }
      if (health.line_regions) this.tabs.fill.configure(health.line_regions);
      if (!models.guide) this.tabs.guide.message(`This server has no guide model: ${why("guide")}.`, true);
    } catch (err) {
      status.textContent = `server unreachable: ${err.message}`;
    }
  }
}

window.addEventListener("DOMContentLoaded", () => {
  window.studio = new Studio();
});
