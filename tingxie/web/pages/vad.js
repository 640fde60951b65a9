// VAD: a file's waveform with the speech the server's VAD finds under the chosen settings.
import { t } from "../i18n.js";
import { $, $$, el, show, toast, sharpCanvas } from "../lib/dom.js";
import { upload } from "../lib/api.js";
import { fmtTime, fmtDuration } from "../lib/format.js";
import { VAD_STORE, VAD_FIELDS, vadDefaults, loadVadDefaults, carriedVad, renderVadNotes } from "../lib/vad-settings.js";
import { currentPage } from "../lib/router.js";

export default {
  init() {
    $("#vad-file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) this.open(f); });
    const sliders = [["vad-threshold", (v) => Number(v).toFixed(2)], ["vad-silence", String], ["vad-pad", String], ["vad-max", String]];
    for (const [id, fmt] of sliders) {
      $(`#${id}`).addEventListener("input", (e) => { $(`#${id}-v`).value = fmt(e.target.value); this.draw(); this.schedule(); });
    }
    this.fmt = Object.fromEntries(sliders);
    window.addEventListener("resize", () => this.draw());
    $("#vad-use").addEventListener("click", () => this.use());
    $("#vad-reset").addEventListener("click", () => { localStorage.removeItem(VAD_STORE); renderVadNotes(); this.setSliders(vadDefaults); this.schedule(); });
    $$(".vad-clear").forEach((b) => b.addEventListener("click", () => { localStorage.removeItem(VAD_STORE); renderVadNotes(); }));
    renderVadNotes();
    // start from what the user carried to the other pages, else from the server's defaults
    loadVadDefaults().then((d) => { this.setSliders(carriedVad() || d); $("#vad-canvas").dataset.defaults = "loaded"; });
  },
  setSliders(values) {
    for (const [id, key] of VAD_FIELDS) {
      if (values?.[key] === undefined) continue;
      $(`#${id}`).value = values[key];
      $(`#${id}-v`).value = this.fmt[id]($(`#${id}`).value);
    }
    this.draw();
  },
  // carry the chosen settings to Recognise and Batch (their uploads send them as vad_* fields)
  use() {
    const v = Object.fromEntries(VAD_FIELDS.map(([id, key]) => [key, Number($(`#${id}`).value)]));
    const same = vadDefaults && VAD_FIELDS.every(([, key]) => v[key] === vadDefaults[key]);
    if (same) localStorage.removeItem(VAD_STORE);
    else localStorage.setItem(VAD_STORE, JSON.stringify(v));
    renderVadNotes();
    toast(t("vad.applied"));
  },
  enter() { this.draw(); },
  relabel() {
    if (currentPage() === "vad") { this.draw(); this.result && this.renderStats(); }
  },
  error(msg) { const b = $("#vad-error"); b.textContent = msg || ""; show(b, !!msg); },
  async open(file) {
    this.file = file;
    this.result = null;
    this.samples = null;
    this.duration = null;
    this.error("");
    // nothing of the previous file stays on screen, whatever happens to this one
    $("#vad-list").replaceChildren();
    delete $("#vad-canvas").dataset.threshold;
    $("#vad-filename").textContent = file.name;
    $("#vad-stats").replaceChildren(el("span", { class: "muted", text: t("vad.decoding") }));
    try {
      const buf = await file.arrayBuffer();
      const ctx = new AudioContext();
      const decoded = await ctx.decodeAudioData(buf);
      ctx.close();
      const len = Math.ceil(decoded.duration * 16000);
      const off = new OfflineAudioContext(1, Math.max(1, len), 16000);
      const src = off.createBufferSource();
      src.buffer = decoded;
      src.connect(off.destination);
      src.start();
      this.samples = (await off.startRendering()).getChannelData(0);
      this.duration = decoded.duration;
    } catch (e) {
      this.samples = null; // the server may still decode formats the browser cannot
    }
    this.draw();
    this.compute();
  },
  schedule() {
    clearTimeout(this.deb);
    this.deb = setTimeout(() => this.compute(), 250);
  },
  async compute() {
    if (!this.file) return;
    const form = new FormData();
    form.append("file", this.file, this.file.name);
    form.append("vad_threshold", $("#vad-threshold").value);
    form.append("vad_min_silence_ms", $("#vad-silence").value);
    form.append("vad_speech_pad_ms", $("#vad-pad").value);
    form.append("vad_max_segment_s", $("#vad-max").value);
    const token = (this.token = (this.token || 0) + 1);
    if (!this.result) $("#vad-stats").replaceChildren(el("span", { class: "muted", text: t("vad.computing") }));
    try {
      const res = await upload("/api/vad", form);
      if (token !== this.token) return;
      this.result = res;
      this.duration = this.duration || res.duration;
      $("#vad-canvas").dataset.threshold = Number(form.get("vad_threshold")).toFixed(2);
      this.error("");
    } catch (e) {
      if (token !== this.token) return;
      this.error(e.message);
      this.result = null;
      $("#vad-stats").replaceChildren();
      $("#vad-list").replaceChildren();
      this.draw();
      return;
    }
    this.renderStats();
    this.draw();
  },
  renderStats() {
    const r = this.result;
    const items = [
      [t("vad.count"), String(r.count ?? r.segments.length), "count"],
      [t("vad.ratio"), `${Math.round((r.speech_ratio || 0) * 100)}%`, "ratio"],
      [t("vad.duration"), fmtDuration(r.duration)],
    ];
    $("#vad-stats").replaceChildren(...items.map(([k, v, id]) => el("div", { class: "stat", dataset: { stat: id || "" } }, el("strong", { text: v }), el("span", { class: "muted small", text: k }))));
    $("#vad-list").replaceChildren(...r.segments.map((s, i) => el("li", { text: `${i + 1}. ${fmtTime(s.start, true)} – ${fmtTime(s.end, true)}` })));
  },
  draw() {
    const c = $("#vad-canvas");
    if (!c.offsetParent) return;
    const [g, w, h] = sharpCanvas(c);
    g.fillStyle = "#f8fafc";
    g.fillRect(0, 0, w, h);
    const dur = this.duration || this.result?.duration;
    if (!dur) {
      g.fillStyle = "#94a3b8";
      g.font = "14px system-ui, sans-serif";
      g.textAlign = "center";
      g.fillText(t("vad.hint"), w / 2, h / 2);
      return;
    }
    const x = (sec) => (sec / dur) * w;
    const wave = h - 24;
    // speech segments behind the waveform
    if (this.result) {
      for (const s of this.result.segments) {
        g.fillStyle = "rgba(37, 99, 235, 0.14)";
        g.fillRect(x(s.start), 0, Math.max(1, x(s.end) - x(s.start)), wave);
        g.fillStyle = "#2563eb";
        g.fillRect(x(s.start) + 1, wave + 6, Math.max(2, x(s.end) - x(s.start) - 2), 10); // gap shows adjacent segments
      }
    }
    if (this.samples) {
      const data = this.samples, per = data.length / w, mid = wave / 2;
      g.fillStyle = "#334155";
      for (let px = 0; px < w; px++) {
        let lo = 1, hi = -1;
        const a = Math.floor(px * per), b = Math.min(data.length, Math.floor((px + 1) * per));
        for (let i = a; i < b; i++) { const v = data[i]; if (v < lo) lo = v; if (v > hi) hi = v; }
        if (hi < lo) continue;
        g.fillRect(px, mid - hi * mid * 0.95, 1, Math.max(1, (hi - lo) * mid * 0.95));
      }
    }
    const probs = this.result?.probabilities;
    if (probs?.length) {
      g.strokeStyle = "#f59e0b";
      g.lineWidth = 1.5;
      g.beginPath();
      const fs = this.result.frame_seconds || 0.032;
      probs.forEach((p, i) => { const px = x(i * fs), py = wave - p * wave; i ? g.lineTo(px, py) : g.moveTo(px, py); });
      g.stroke();
      const th = wave - Number($("#vad-threshold").value) * wave;
      g.setLineDash([4, 4]);
      g.strokeStyle = "rgba(245, 158, 11, 0.7)";
      g.beginPath(); g.moveTo(0, th); g.lineTo(w, th); g.stroke();
      g.setLineDash([]);
    }
  },
};
