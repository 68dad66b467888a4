// refcolor studio: what every tab shares (colours, requests, images, files, widgets). An ES module
// imported by studio.js and fill.js; hand-written, no dependencies.

export const $ = (id) => document.getElementById(id);
export const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp"];
export const DEBOUNCE_MS = 120;
export const STAGE_SIDE = 1024; // a stage canvas's longest side, in canvas pixels (guided and fill)

// ------------------------------------------------------------------ colours

export const HEX = /^#?([0-9a-f]{3}|[0-9a-f]{6})$/i;

export function parseHex(text) {
  const m = HEX.exec(text.trim());
  if (!m) return null;
  let d = m[1];
  if (d.length === 3) d = d.split("").map((c) => c + c).join("");
  return "#" + d.toLowerCase();
}

export function hexToRgb(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

export function rgbToHex(rgb) {
  return "#" + rgb.map((v) => Math.max(0, Math.min(255, Math.round(v))).toString(16).padStart(2, "0")).join("");
}

// An entry of a colours file, as `refcolor guide --colors` reads it: "#rrggbb", "#rgb" or [r, g, b].
export function parseColorEntry(value, index) {
  if (typeof value === "string") {
    const hex = parseHex(value);
    if (hex && value.trim().startsWith("#")) return hex;
  } else if (Array.isArray(value) && value.length === 3 && value.every((v) => Number.isInteger(v) && v >= 0 && v <= 255)) {
    return rgbToHex(value);
  }
  throw new Error(`colors[${index}]: expected "#rrggbb", "#rgb" or [r, g, b] with integers 0..255, got ${JSON.stringify(value)}`);
}

// An artist's starting palette; the eyedropper image adds its own main colours.
export const BASE_SWATCHES = [
  "#e03c31", "#f28c28", "#f6d155", "#7bc043", "#2a9d8f", "#2a5bd7", "#6a4c93", "#d85e9f",
  "#f5d0b0", "#c68642", "#8d5524", "#3b2f2f", "#f4f1ea", "#9e9e9e", "#4a4a4a", "#141414",
];

// ------------------------------------------------------------------ helpers

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function post(path, form, signal) {
  const response = await fetch(path, { method: "POST", body: form, signal });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = (await response.json()).error || message;
    } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, message);
  }
  return response;
}

export function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot display this image"));
    img.src = url;
  });
}

export function imageData(img) {
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(img, 0, 0);
  return ctx.getImageData(0, 0, canvas.width, canvas.height);
}

export function checkImageFile(file) {
  if (!file) return null;
  if (!IMAGE_TYPES.includes(file.type)) throw new Error(`${file.name || "file"}: not a PNG, JPEG or WebP image`);
  return file;
}

export function stem(name) {
  return (name || "image").replace(/\.[^.]*$/, "").replace(/[^\w.-]+/g, "_") || "image";
}

export function saveBlob(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

// Where a canvas's picture is on screen: the stages are styled `object-fit: contain` within a
// maximum height, so the element's box may be wider or taller than the picture it shows.
export function contentRect(canvas) {
  const rect = canvas.getBoundingClientRect();
  const scale = Math.min(rect.width / canvas.width, rect.height / canvas.height);
  const width = canvas.width * scale;
  const height = canvas.height * scale;
  return { left: rect.left + (rect.width - width) / 2, top: rect.top + (rect.height - height) / 2, width, height };
}

// Drop and choose: `onFile` gets the first image file.
export function fileTarget(dropZone, input, onFile, onError) {
  const take = (file) => {
    try {
      if (file) onFile(checkImageFile(file));
    } catch (err) {
      onError(err.message);
    }
  };
  input.addEventListener("change", () => {
    take(input.files[0]);
    input.value = "";
  });
  dropZone.addEventListener("dragover", (e) => {
    e.preventDefault();
    dropZone.classList.add("over");
  });
  dropZone.addEventListener("dragleave", () => dropZone.classList.remove("over"));
  dropZone.addEventListener("drop", (e) => {
    e.preventDefault();
    dropZone.classList.remove("over");
    take(e.dataTransfer.files[0]);
  });
}

// ------------------------------------------------------------------ shared widgets

// Before/after: the result over the input, cut at the slider.
export class Compare {
  constructor(root) {
    this.root = root;
    this.before = document.createElement("img");
    this.before.className = "before";
    this.before.alt = "input";
    this.after = document.createElement("img");
    this.after.className = "after";
    this.after.alt = "result";
    this.slider = document.createElement("input");
    this.slider.type = "range";
    this.slider.min = "0";
    this.slider.max = "100";
    this.slider.value = "50";
    this.slider.className = "compare-slider";
    this.slider.setAttribute("aria-label", "Before / after");
    root.append(this.before, this.after, this.slider);
    this.slider.addEventListener("input", () => this.split(this.slider.value));
    this.split(50);
  }
  split(percent) {
    this.root.style.setProperty("--split", `${percent}%`);
  }
  setBefore(url) {
    this.before.src = url;
    this.root.classList.add("has-before");
  }
  setAfter(url) {
    if (url) this.after.src = url;
    else this.after.removeAttribute("src");
    this.root.classList.toggle("has-after", Boolean(url));
  }
}

export class Progress {
  constructor(root) {
    this.root = root;
    this.text = root.querySelector(".text");
  }
  busy(text) {
    this.root.dataset.state = "busy";
    this.text.textContent = text;
    this.started = performance.now();
  }
  done(response, what) {
    const server = parseFloat(response.headers.get("x-refcolor-seconds") || "NaN");
    const queue = parseFloat(response.headers.get("x-refcolor-queue-seconds") || "0");
    const total = (performance.now() - this.started) / 1000;
    this.root.dataset.state = "done";
    this.root.dataset.seconds = String(server);
    this.text.textContent = `${what}: ${server.toFixed(2)} s on the server (queue ${queue.toFixed(2)} s), ${total.toFixed(2)} s in all`;
  }
  stale(text) {
    this.root.dataset.state = "stale";
    this.text.textContent = text;
  }
  fail(text) {
    this.root.dataset.state = "error";
    this.text.textContent = text;
  }
}

// One request at a time per tab: a newer one aborts the older, and only the newest is shown.
export class Runner {
  constructor() {
    this.controller = null;
    this.latest = 0;
  }
  // -> { response, blob } (or { response, json } with asJson), or null when a newer request came.
  async run(path, form, { asJson = false } = {}) {
    if (this.controller) this.controller.abort();
    const controller = new AbortController();
    this.controller = controller;
    const id = ++this.latest;
    const response = await post(path, form, controller.signal);
    const body = asJson ? await response.json() : await response.blob();
    if (id !== this.latest) return null; // superseded while it ran
    this.controller = null;
    return asJson ? { response, json: body } : { response, blob: body };
  }
}

export function setDownload(link, blob, name) {
  if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.classList.remove("disabled");
  link.setAttribute("aria-disabled", "false");
  return link.href;
}


// Up to `count` frequent colours of an image (4 bits per channel buckets, near-white skipped).
export function mainColors(image, count) {
  const buckets = new Map();
  const d = image.data;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] < 128 || (d[i] > 235 && d[i + 1] > 235 && d[i + 2] > 235)) continue;
    const key = ((d[i] >> 4) << 8) | ((d[i + 1] >> 4) << 4) | (d[i + 2] >> 4);
    const b = buckets.get(key) || [0, 0, 0, 0];
    b[0] += d[i]; b[1] += d[i + 1]; b[2] += d[i + 2]; b[3] += 1;
    buckets.set(key, b);
  }
  return [...buckets.values()]
    .sort((a, b) => b[3] - a[3])
    .slice(0, count)
    .map((b) => rgbToHex([b[0] / b[3], b[1] / b[3], b[2] / b[3]]));
}

// ------------------------------------------------------------------ colour entry

// The colour controls of a tab, by element id prefix P: P-picker (<input type=color>), P-hex,
// P-r / P-g / P-b, an optional P-apply button, P-swatches and the eyedropper (P-eyedropper-box,
// P-eyedropper-file, P-eyedropper). The picker always shows the current colour; `apply(hex)` is
// called when the user commits one (picker closed, Enter in HEX or RGB, Apply, a swatch, the
// eyedropper), `message(text, isError)` reports bad entries.
export class ColorPanel {
  constructor(prefix, { apply, message }) {
    this.prefix = prefix;
    this.applyColor = apply;
    this.message = message;
    const el = (name) => $(`${prefix}-${name}`);
    this.picker = el("picker");
    this.hex = el("hex");
    this.rgb = ["r", "g", "b"].map(el);
    this.swatches = el("swatches");
    this.eyedropper = el("eyedropper");
    this.picker.addEventListener("input", () => this.show(this.picker.value));
    this.picker.addEventListener("change", () => this.applyColor(this.picker.value));
    this.hex.addEventListener("keydown", (e) => {
      if (e.key === "Enter") this.applyHexField();
    });
    this.hex.addEventListener("input", () => {
      const hex = parseHex(this.hex.value);
      if (hex) this.show(hex, { keepHex: true });
    });
    for (const field of this.rgb) {
      field.addEventListener("keydown", (e) => {
        if (e.key === "Enter") this.applyRgbFields();
      });
      field.addEventListener("input", () => this.syncFromRgb());
    }
    if (el("apply")) el("apply").addEventListener("click", () => this.applyHexField());
    fileTarget(el("eyedropper-box"), el("eyedropper-file"), (f) => this.loadEyedropper(f), (m) => this.message(m, true));
    this.eyedropper.addEventListener("click", (e) => this.pickFromEyedropper(e));
    this.renderSwatches([]);
  }

  // The current colour, "#rrggbb".
  value() {
    return this.picker.value;
  }

  show(hex, { keepHex = false } = {}) {
    this.picker.value = hex;
    if (!keepHex) this.hex.value = hex;
    const rgb = hexToRgb(hex);
    this.rgb.forEach((field, k) => {
      field.value = rgb[k];
    });
  }

  choose(hex) {
    this.show(hex);
    this.applyColor(hex);
  }

  syncFromRgb() {
    const values = this.rgb.map((field) => Number(field.value));
    if (values.every((v) => Number.isInteger(v) && v >= 0 && v <= 255)) {
      const hex = rgbToHex(values);
      this.picker.value = hex;
      this.hex.value = hex;
    }
  }

  applyHexField() {
    const hex = parseHex(this.hex.value);
    if (!hex) {
      this.message(`HEX: expected #rrggbb or #rgb, got "${this.hex.value}"`, true);
      return;
    }
    this.choose(hex);
  }

  applyRgbFields() {
    const values = this.rgb.map((field) => Number(field.value));
    if (!values.every((v) => Number.isInteger(v) && v >= 0 && v <= 255)) {
      this.message("RGB: expected three integers 0..255", true);
      return;
    }
    this.choose(rgbToHex(values));
  }

  // The base palette, after `extra` colours (the eyedropper image's main colours).
  renderSwatches(extra) {
    this.swatches.replaceChildren();
    for (const hex of [...extra, ...BASE_SWATCHES]) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "swatch-button";
      b.title = hex;
      b.dataset.color = hex;
      b.style.setProperty("background", hex);
      b.addEventListener("click", () => this.choose(hex));
      this.swatches.append(b);
    }
  }

  async loadEyedropper(file) {
    try {
      const img = await loadImage(URL.createObjectURL(file));
      const canvas = this.eyedropper;
      const scale = Math.min(1, 512 / Math.max(img.naturalWidth, img.naturalHeight));
      canvas.width = Math.max(1, Math.round(img.naturalWidth * scale));
      canvas.height = Math.max(1, Math.round(img.naturalHeight * scale));
      const ctx = canvas.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      this.renderSwatches(mainColors(ctx.getImageData(0, 0, canvas.width, canvas.height), 8));
      $(`${this.prefix}-eyedropper-box`).open = true;
    } catch (err) {
      this.message(err.message, true);
    }
  }

  pickFromEyedropper(e) {
    const canvas = this.eyedropper;
    const rect = canvas.getBoundingClientRect();
    const x = Math.floor(((e.clientX - rect.left) * canvas.width) / rect.width);
    const y = Math.floor(((e.clientY - rect.top) * canvas.height) / rect.height);
    const p = canvas.getContext("2d").getImageData(x, y, 1, 1).data;
    this.choose(rgbToHex([p[0], p[1], p[2]]));
  }
}

// Ctrl+Z / Cmd+Z undo, Ctrl+Shift+Z / Ctrl+Y redo, for a tab with undo() and redo(); true when the
// key was one of them. Keys typed into a text or number field are left to the field.
export function historyKey(e, tab) {
  if (e.target instanceof HTMLInputElement && e.target.type !== "checkbox" && e.target.type !== "range") return false;
  const mod = e.ctrlKey || e.metaKey;
  if (mod && (e.key === "z" || e.key === "Z")) {
    e.preventDefault();
    if (e.shiftKey) tab.redo();
    else tab.undo();
    return true;
  }
  if (mod && (e.key === "y" || e.key === "Y")) {
    e.preventDefault();
    tab.redo();
    return true;
  }
  return false;
}
