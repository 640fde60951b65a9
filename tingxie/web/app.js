// tingxie web UI: a no-build single-page app. Hash routes, one section per page.
import { t, lang, setLang, onLangChange, applyStatic, langName, errorText, isPermanentFailure } from "./i18n.js";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
const KEY_STORE = "tingxie.apiKey";
const BATCH_STORE = "tingxie.batchId";
const VAD_STORE = "tingxie.vad"; // VAD settings carried from the VAD page to Recognise/Batch
const ALL_LANGS = ["auto", "zh", "en", "yue", "ja", "ko", "fr", "de", "es", "ru"];
let LANGS = ALL_LANGS; // narrowed to the languages the default model has (modelLanguages)

// ---------------------------------------------------------------- helpers

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

function fmtTime(s, ms = false) {
  s = Math.max(0, s || 0);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  const frac = ms ? "." + String(Math.floor((s % 1) * 10)) : "";
  const mmss = `${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}${frac}`;
  return h ? `${h}:${mmss}` : mmss;
}

function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${(s / 3600).toFixed(2)} h`;
}

function fmtDate(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return d.toLocaleString(lang() === "zh" ? "zh-CN" : undefined, { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1e6) return `${(n / 1e3).toFixed(0)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

// Size a canvas's backing store to its CSS box × devicePixelRatio; drawing uses CSS pixels.
function sharpCanvas(c) {
  const dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth, h = c.clientHeight;
  c.width = w * dpr;
  c.height = h * dpr;
  const g = c.getContext("2d");
  g.scale(dpr, dpr);
  return [g, w, h];
}

function show(node, on = true) {
  node.classList.toggle("hidden", !on);
}

let toastTimer;
function toast(msg, kind = "info") {
  const box = $("#toast");
  box.textContent = msg;
  box.className = `show ${kind}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (box.className = ""), 3500);
}

function langOptions(select, withAuto = true) {
  const keep = select.value;
  select.replaceChildren(...LANGS.filter((l) => withAuto || l !== "auto").map((l) => el("option", { value: l, text: langName(l) })));
  if (keep) select.value = keep;
}

// Offer only languages the default model can transcribe (whisper-base has no Cantonese).
function modelLanguages(models) {
  const m = models.find((x) => x.default) || models[0];
  if (!m || !Array.isArray(m.languages) || !m.languages.length) return;
  LANGS = ALL_LANGS.filter((l) => l === "auto" || m.languages.includes(l));
  $$(".lang-select").forEach((s) => langOptions(s));
}

function scriptOptions(select) {
  const keep = select.value;
  select.replaceChildren(...["hans", "hant", "keep"].map((v) => el("option", { value: v, text: t(`opt.script.${v}`) })));
  if (keep) select.value = keep;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const ta = el("textarea", { style: "position:fixed;opacity:0" });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    document.execCommand("copy");
    ta.remove();
  }
  toast(t("res.copied"));
}

function downloadBlob(name, text, type = "text/plain") {
  const a = el("a", { href: URL.createObjectURL(new Blob([text], { type: `${type};charset=utf-8` })), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

function srtTime(s, sep = ",") {
  const ms = Math.round(s * 1000);
  const h = Math.floor(ms / 3600000), m = Math.floor((ms % 3600000) / 60000), sec = Math.floor((ms % 60000) / 1000);
  return `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}${sep}${String(ms % 1000).padStart(3, "0")}`;
}

// ---------------------------------------------------------------- API + key

function apiKey() {
  return localStorage.getItem(KEY_STORE) || "";
}

function withKey(url) {
  const k = apiKey();
  if (!k) return url;
  return url + (url.includes("?") ? "&" : "?") + "api_key=" + encodeURIComponent(k);
}

let keyPrompt = null;
function askKey(reason) {
  if (keyPrompt) return keyPrompt;
  const dlg = $("#key-dialog");
  $("#key-reason").textContent = reason || "";
  $("#key-input").value = "";
  keyPrompt = new Promise((resolve) => {
    const done = (ok) => {
      dlg.close();
      keyPrompt = null;
      $("#key-form").onsubmit = null;
      $("#key-cancel").onclick = null;
      if (ok) {
        localStorage.setItem(KEY_STORE, $("#key-input").value.trim());
        updateKeyButton();
      }
      resolve(ok);
    };
    $("#key-form").onsubmit = (e) => { e.preventDefault(); if ($("#key-input").value.trim()) done(true); };
    $("#key-cancel").onclick = () => done(false);
    dlg.oncancel = (e) => { e.preventDefault(); done(false); };
    dlg.showModal();
    $("#key-input").focus();
  });
  return keyPrompt;
}

function updateKeyButton() {
  show($("#forget-key"), !!apiKey());
}

// `message` is what the user reads (translated from the server's stable `code`); `raw` is the server's own words.
class ApiError extends Error {
  constructor(status, raw, code = null) {
    super(errorText(code, raw, status));
    this.status = status;
    this.raw = raw;
    this.code = code;
  }
}

function errorFromBody(status, body, fallback) {
  const e = body?.error;
  return new ApiError(status, e?.message || body?.detail || fallback, e?.code || null);
}

async function responseError(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not json */ }
  return errorFromBody(res.status, body, `${res.status} ${res.statusText}`);
}

async function api(path, opts = {}) {
  for (;;) {
    const headers = new Headers(opts.headers || {});
    if (apiKey()) headers.set("Authorization", `Bearer ${apiKey()}`);
    let res;
    try {
      res = await fetch(path, { ...opts, headers });
    } catch (e) {
      throw new ApiError(0, e.message, "network");
    }
    if (res.status === 401) {
      const err = await responseError(res);
      if (await askKey(err.message)) continue;
      throw err;
    }
    if (!res.ok) throw await responseError(res);
    if (opts.raw) return res;
    const type = res.headers.get("content-type") || "";
    return type.includes("json") ? res.json() : res.text();
  }
}

// POST multipart with upload progress (fetch has none); retries after a 401 prompt.
function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const send = () => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", path);
      if (apiKey()) xhr.setRequestHeader("Authorization", `Bearer ${apiKey()}`);
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress && onProgress(e.loaded / e.total);
      xhr.onerror = () => reject(new ApiError(0, "network error during upload", "network"));
      xhr.onload = async () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch { /* not json */ }
        if (xhr.status === 401) {
          const err = errorFromBody(401, body, "unauthorised");
          if (await askKey(err.message)) return send();
          return reject(err);
        }
        if (xhr.status >= 400) return reject(errorFromBody(xhr.status, body, `${xhr.status} ${xhr.statusText}`));
        resolve(body);
      };
      xhr.send(form);
    };
    send();
  });
}

// ---------------------------------------------------------------- routing

const pages = {};
let currentPage = null;

function route() {
  const name = (location.hash.replace(/^#\/?/, "").split("/")[0] || "recognise");
  const page = pages[name] ? name : "recognise";
  if (currentPage && currentPage !== page) pages[currentPage].leave?.();
  $$(".page").forEach((s) => (s.hidden = s.id !== `page-${page}`));
  $$(".tabs a").forEach((a) => a.setAttribute("aria-current", a.dataset.page === page ? "page" : "false"));
  const changed = currentPage !== page;
  currentPage = page;
  document.title = `${t(`nav.${page}`)} · tingxie`;
  if (changed) pages[page].enter?.();
}

// ---------------------------------------------------------------- result component

// Renders a finished job: player + clickable segments + copy + downloads.
function renderResult(container, job) {
  const r = job.result || {};
  const segs = r.segments || [];
  const audio = el("audio", { controls: true, preload: "metadata", src: withKey(`/api/jobs/${job.id}/audio`) });
  audio.addEventListener("error", () => show(noAudio, true));
  const noAudio = el("p", { class: "muted small hidden", text: t("res.noaudio") });
  const fullText = r.text ?? segs.map((s) => s.text).join(" ");
  const list = el("ol", { class: "segments", "aria-label": t("res.segments") });
  const items = segs.map((s) => {
    const li = el("li", { class: "segment", tabindex: "0", dataset: { start: s.start, end: s.end } },
      el("span", { class: "ts", text: `${fmtTime(s.start)} – ${fmtTime(s.end)}` }),
      (s.flags || []).includes("no_text")
        ? el("span", { class: "seg-text muted", text: lang() === "zh" ? "［此处有语音，未能识别出文字］" : "[speech here gave no text]" })
        : el("span", { class: "seg-text", text: s.text }));
    const play = () => { audio.currentTime = s.start + 0.001; audio.play().catch(() => {}); };
    li.addEventListener("click", play);
    li.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); play(); } });
    return li;
  });
  list.append(...items);
  let last = -1;
  audio.addEventListener("timeupdate", () => {
    const now = audio.currentTime;
    const idx = segs.findIndex((s) => now >= s.start && now < s.end);
    if (idx === last) return;
    if (last >= 0) items[last]?.classList.remove("playing");
    last = idx;
    if (idx >= 0) {
      items[idx].classList.add("playing");
      items[idx].scrollIntoView({ block: "nearest", behavior: "smooth" });
    }
  });
  const dl = ["txt", "srt", "vtt", "json"].map((f) =>
    el("a", { class: "button ghost small", href: withKey(`/api/jobs/${job.id}/result?format=${f}`), download: `${(job.filename || job.id).replace(/\.[^.]+$/, "")}.${f}`, text: f.toUpperCase() }));
  const meta = el("div", { class: "meta" },
    metaItem(t("res.language"), langName(r.language || job.language)),
    metaItem(t("res.duration"), fmtDuration(r.duration ?? job.duration)),
    metaItem(t("res.processing"), r.processing_time != null ? `${r.processing_time.toFixed(1)} s` : "–"),
    metaItem(t("res.rtf"), r.rtf ? `${(1 / r.rtf).toFixed(1)}× ${lang() === "zh" ? "实时" : "real time"}` : "–"));
  const body = segs.length ? list : el("p", { class: "empty", text: t("res.empty") });
  const card = el("div", { class: "card result", dataset: { jobId: job.id } },
    el("div", { class: "row between wrap" },
      el("h2", { class: "filename", text: job.filename || job.id }),
      el("div", { class: "row wrap" },
        el("button", { type: "button", class: "ghost small", text: t("res.copy"), onclick: () => copyText(fullText) }),
        el("span", { class: "muted small", text: t("res.download") }), ...dl)),
    meta,
    r.warning_count ? el("p", { class: "alert error no-text-warning", role: "status", text: (lang() === "zh" ? `注意：${r.warning_count} 处检测到的语音没有识别出文字（已在分段中标出）` : `Warning: ${r.warning_count} stretch(es) of detected speech gave no text (marked in the segments)`) }) : null,
    el("div", { class: "player" }, audio, noAudio, el("span", { class: "muted small", text: segs.length ? t("res.click") : "" })),
    body,
    el("details", { class: "fulltext" }, el("summary", { text: lang() === "zh" ? "全文" : "Full text" }), el("p", { class: "plain", text: fullText })));
  container.replaceChildren(card);
  return card;
}

function metaItem(label, value) {
  return el("div", {}, el("span", { class: "muted small", text: label }), el("strong", { text: value }));
}

async function pollJob(id, onUpdate, isStale = () => false) {
  let delay = 400;
  for (;;) {
    if (isStale()) return null;
    const job = await api(`/api/jobs/${id}`);
    onUpdate(job);
    if (["done", "failed", "cancelled"].includes(job.state)) return job;
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(job.state === "running" ? 1000 : 2000, delay * 1.3); // running: follow each finished window
  }
}

// ---------------------------------------------------------------- Recognise

function bindDrop(zone, input, onFiles) {
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) onFiles([...e.dataTransfer.files]);
  });
  input.addEventListener("change", () => { if (input.files.length) onFiles([...input.files]); input.value = ""; });
  // the visible "choose" pill is a label child; Enter/Space on the zone opens the picker
  zone.tabIndex = 0;
  zone.setAttribute("role", "button");
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
}

// Hotwords may be typed with spaces or commas (either kind): with a comma anywhere, commas
// separate (so "New York, Hong Kong" keeps its phrases); otherwise spaces do. Sent comma-separated.
function normaliseHotwords(value) {
  const s = String(value || "").trim();
  if (!s) return "";
  const parts = /[,，、;；]/.test(s) ? s.split(/[,，、;；]/) : s.split(/\s+/);
  return parts.map((w) => w.trim()).filter(Boolean).join(",");
}

function formOptions(form) {
  const fd = new FormData(form);
  const out = {};
  for (const name of ["language", "hotwords", "zh_script", "model"]) {
    const v = name === "hotwords" ? normaliseHotwords(fd.get(name)) : fd.get(name);
    if (v && !(name === "language" && v === "auto")) out[name] = v;
  }
  out.itn = form.elements.itn.checked ? "true" : "false";
  Object.assign(out, carriedVad() || {});
  return out;
}

// ---------------------------------------------------------------- VAD settings shared by the pages

// [slider id, form field of POST /api/jobs, tingxie's VadOptions value as the fallback]
const VAD_FIELDS = [["vad-threshold", "vad_threshold", 0.5], ["vad-silence", "vad_min_silence_ms", 2000],
  ["vad-pad", "vad_speech_pad_ms", 300], ["vad-max", "vad_max_segment_s", 29]];
let vadDefaults = null;

// What transcription uses when no VAD field is sent: the defaults the server publishes for
// POST /api/jobs in its own OpenAPI schema, so the VAD page cannot drift from them.
async function loadVadDefaults() {
  if (vadDefaults) return vadDefaults;
  const out = Object.fromEntries(VAD_FIELDS.map(([, k, v]) => [k, v]));
  try {
    const spec = await api("/openapi.json");
    let schema = spec.paths["/api/jobs"].post.requestBody.content["multipart/form-data"].schema;
    if (schema.$ref) schema = spec.components.schemas[schema.$ref.split("/").pop()];
    for (const k of Object.keys(out)) if (typeof schema.properties?.[k]?.default === "number") out[k] = schema.properties[k].default;
  } catch { /* keep the fallbacks */ }
  return (vadDefaults = out);
}

function carriedVad() {
  try { return JSON.parse(localStorage.getItem(VAD_STORE) || "null"); } catch { return null; }
}

function renderVadNotes() {
  const v = carriedVad();
  $$(".vad-note").forEach((n) => {
    show(n, !!v);
    if (v) $(".vad-note-text", n).textContent = t("opt.vad.custom", { threshold: Number(v.vad_threshold).toFixed(2), silence: v.vad_min_silence_ms, pad: v.vad_speech_pad_ms, max: v.vad_max_segment_s });
  });
}

let recToken = 0;
pages.recognise = {
  file: null,
  init() {
    bindDrop($("#rec-drop"), $("#rec-file"), (files) => this.choose(files[0]));
    $("#rec-options").addEventListener("submit", (e) => { e.preventDefault(); this.submit(); });
    $("#rec-again").addEventListener("click", () => this.reset());
    this.loadModels();
  },
  async loadModels() {
    const sel = $("#rec-model");
    try {
      const { models } = await api("/api/models");
      modelLanguages(models);
      sel.replaceChildren(...models.map((m) => el("option", { value: m.id, text: m.id + (m.loaded ? "" : ` (${t("sys.model.notloaded")})`), selected: m.default || undefined })));
    } catch (e) {
      sel.replaceChildren(el("option", { value: "", text: "whisper-base" }));
    }
  },
  choose(file) {
    this.file = file;
    const c = $("#rec-chosen");
    c.replaceChildren(el("span", { class: "muted", text: `${t("rec.selected")}: ` }), el("strong", { text: file.name }), el("span", { class: "muted", text: ` · ${fmtBytes(file.size)}` }));
    show(c);
    $("#rec-submit").disabled = false;
    $("#rec-submit").focus();
  },
  reset() {
    recToken++;
    this.file = null;
    show($("#rec-form-wrap"));
    show($("#rec-progress"), false);
    show($("#rec-error"), false);
    show($("#rec-again-wrap"), false);
    show($("#rec-chosen"), false);
    $("#rec-result").replaceChildren();
    $("#rec-submit").disabled = true;
  },
  progress(label, frac, name) {
    show($("#rec-progress"));
    $("#rec-progress-label").textContent = label;
    $("#rec-progress-pct").textContent = frac == null ? "" : `${Math.round(frac * 100)}%`;
    $("#rec-progress-bar").style.width = `${Math.round((frac ?? 0) * 100)}%`;
    $("#rec-progress-bar").classList.toggle("indeterminate", frac == null);
    if (name) $("#rec-progress-file").textContent = name;
  },
  async submit() {
    if (!this.file) return;
    const token = ++recToken;
    const form = new FormData();
    for (const [k, v] of Object.entries(formOptions($("#rec-options")))) form.append(k, v);
    form.append("files", this.file, this.file.name);
    show($("#rec-error"), false);
    show($("#rec-form-wrap"), false);
    show($("#rec-again-wrap"));
    this.progress(t("rec.uploading"), 0, this.file.name);
    try {
      const res = await upload("/api/jobs", form, (f) => this.progress(t("rec.uploading"), f));
      const id = res.jobs[0].id;
      history.replaceState(null, "", `#recognise/${id}`);
      const job = await pollJob(id, (j) => {
        if (token !== recToken) return;
        if (j.state === "queued") this.progress(t("rec.queued"), null);
        // before the first window finishes there is no figure to show: a moving bar, not a stuck 0 %
        else if (j.state === "running") this.progress(t("rec.running"), j.progress || null);
      }, () => token !== recToken);
      if (!job || token !== recToken) return;
      this.finish(job);
    } catch (e) {
      if (token !== recToken) return;
      show($("#rec-progress"), false);
      this.fail(e.message);
    }
  },
  finish(job) {
    show($("#rec-progress"), false);
    if (job.state === "done") renderResult($("#rec-result"), job);
    else this.fail(`${t(job.state === "failed" ? "rec.failed" : "rec.cancelled")}${job.error ? (lang() === "zh" ? "：" : ": ") + errorText(null, job.error) : ""}`);
  },
  fail(msg) {
    const box = $("#rec-error");
    box.textContent = msg;
    show(box);
  },
  async enter() {
    const m = location.hash.match(/^#recognise\/([\w-]+)/);
    if (m && !$("#rec-result").firstChild) {
      show($("#rec-form-wrap"), false);
      show($("#rec-again-wrap"));
      const token = ++recToken;
      try {
        const job = await pollJob(m[1], (j) => j.state !== "done" && this.progress(t(j.state === "running" ? "rec.running" : "rec.queued"), j.progress || null, j.filename), () => token !== recToken);
        if (job && token === recToken) this.finish(job);
      } catch (e) { this.fail(e.message); }
    }
  },
};

// ---------------------------------------------------------------- Real-time

pages.realtime = {
  state: "idle",
  finals: [],
  init() {
    $("#rt-start").addEventListener("click", () => this.start());
    $("#rt-stop").addEventListener("click", () => this.stop());
    $("#rt-copy").addEventListener("click", () => copyText(this.finals.map((f) => f.text).join("\n")));
    $("#rt-txt").addEventListener("click", () => downloadBlob("dictation.txt", this.finals.map((f) => f.text).join("\n") + "\n"));
    $("#rt-srt").addEventListener("click", () => downloadBlob("dictation.srt", this.finals.map((f, i) => `${i + 1}\n${srtTime(f.start)} --> ${srtTime(f.end)}\n${f.text}\n`).join("\n")));
    $("#rt-clear").addEventListener("click", () => { this.finals = []; this.renderText(""); });
  },
  setStatus(key, live = false) {
    const s = $("#rt-status");
    s.textContent = t(key);
    s.classList.toggle("live", live);
  },
  renderText(partial) {
    const box = $("#rt-transcript");
    if (!this.finals.length && !partial) {
      box.replaceChildren(el("p", { class: "placeholder", text: t("rt.placeholder") }));
      return;
    }
    const nodes = this.finals.map((f) => el("p", { class: "final" }, el("span", { class: "ts", text: `${fmtTime(f.start)}` }), el("span", { text: f.text })));
    if (partial) nodes.push(el("p", { class: "partial" }, el("span", { class: "ts", text: "…" }), el("span", { text: partial })));
    box.replaceChildren(...nodes);
    box.scrollTop = box.scrollHeight;
  },
  error(msg) {
    const b = $("#rt-error");
    b.textContent = msg;
    show(b, !!msg);
  },
  async start() {
    if (this.state !== "idle") return;
    this.error("");
    this.state = "starting";
    $("#rt-start").disabled = true;
    this.setStatus("rt.connecting");
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
    } catch (e) {
      this.error(t("rt.nomic") + e.message);
      return this.cleanup();
    }
    this.ctx = new AudioContext();
    await this.ctx.audioWorklet.addModule("pcm-worklet.js");
    const src = this.ctx.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.ctx, "pcm16-resampler", { processorOptions: { targetRate: 16000, frameMs: 100 } });
    const mute = this.ctx.createGain();
    mute.gain.value = 0;
    src.connect(this.node).connect(mute).connect(this.ctx.destination);
    this.queue = [];
    this.node.port.onmessage = (e) => {
      const { pcm, level } = e.data;
      this.meter(level);
      if (this.ws?.readyState === WebSocket.OPEN && this.ready) {
        for (const q of this.queue.splice(0)) this.ws.send(q);
        this.ws.send(pcm);
      } else if (this.state === "starting" || this.state === "recording") this.queue.push(pcm);
    };
    this.openSocket(false);
  },
  openSocket(retried) {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(withKey(`${proto}//${location.host}/v1/stream`));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.ready = false;
    let gotAny = false;
    ws.onopen = () => {
      ws.send(JSON.stringify({ language: $("#rt-language").value === "auto" ? null : $("#rt-language").value, itn: $("#rt-itn").checked, zh_script: $("#rt-script").value, sample_rate: 16000, partials: true }));
    };
    ws.onmessage = (e) => {
      if (typeof e.data !== "string") return;
      gotAny = true;
      const m = JSON.parse(e.data);
      if (m.type === "ready") {
        this.ready = true;
        this.state = "recording";
        this.session = m.session_id;
        $("#rt-stop").disabled = false;
        this.setStatus("rt.listening", true);
      } else if (m.type === "partial") {
        this.renderText(m.text);
      } else if (m.type === "final") {
        if (m.text && m.text.trim()) this.finals.push({ text: m.text.trim(), start: m.start || 0, end: m.end || m.start || 0 });
        this.renderText("");
      } else if (m.type === "error") {
        this.error(errorText(m.code, m.message));
      }
    };
    ws.onclose = async (e) => {
      if (!gotAny && !retried && (e.code === 1008 || e.code === 4401 || e.code === 1006 || e.code === 1003)) {
        // rejected before anything arrived: maybe a missing/invalid key
        const hasKeys = await api("/api/system").then((s) => s.keys_required).catch((err) => err.status === 401);
        if (hasKeys && this.state !== "idle" && (await askKey(e.reason || t("key.body")))) return this.openSocket(true);
      }
      if (this.state === "recording" || this.state === "starting") this.error(`${t("rt.closed")}${e.reason ? ": " + e.reason : ""}`);
      this.renderText("");
      this.cleanup();
    };
  },
  stop() {
    if (this.state !== "recording") return;
    this.state = "stopping";
    $("#rt-stop").disabled = true;
    this.setStatus("rt.stopping");
    this.stopMic();
    try { this.ws.send(JSON.stringify({ type: "stop" })); } catch { /* closed */ }
    // the server sends the last final and closes; do not wait forever
    this.stopTimer = setTimeout(() => this.ws?.close(), 20000);
  },
  stopMic() {
    this.stream?.getTracks().forEach((tr) => tr.stop());
    this.node?.disconnect();
    this.ctx?.close().catch(() => {});
    this.stream = this.node = this.ctx = null;
    this.meter(0);
  },
  cleanup() {
    clearTimeout(this.stopTimer);
    this.stopMic();
    this.state = "idle";
    this.ws = null;
    $("#rt-start").disabled = false;
    $("#rt-stop").disabled = true;
    this.setStatus("rt.idle");
  },
  meter(level) {
    const pct = Math.min(100, Math.round(Math.sqrt(level || 0) * 250));
    $("#rt-meter").style.width = `${pct}%`;
    $(".meter").setAttribute("aria-valuenow", pct);
  },
};

// ---------------------------------------------------------------- Batch

pages.batch = {
  rows: new Map(), // key -> {key, name, size, state, upload, jobId, error}
  byJob: new Map(),
  seen: new Set(),
  pending: [],
  active: 0,
  timer: null,
  rate: [],
  init() {
    this.batchId = localStorage.getItem(BATCH_STORE) || null;
    bindDrop($("#batch-drop"), $("#batch-files"), (files) => this.add(files));
    $("#batch-new").addEventListener("click", () => this.newBatch());
    $("#batch-cancel").addEventListener("click", () => this.cancelAll());
    $("#batch-retry").addEventListener("click", () => this.retryFailed());
    this.render();
  },
  enter() { this.poll(); },
  leave() { clearTimeout(this.timer); this.timer = null; },
  ensureBatch() {
    if (!this.batchId) {
      const b = new Uint8Array(16);
      crypto.getRandomValues(b);
      this.batchId = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
      localStorage.setItem(BATCH_STORE, this.batchId);
    }
    return this.batchId;
  },
  newBatch() {
    if (this.active || this.pending.length) return toast(t("rec.uploading"));
    this.batchId = null;
    localStorage.removeItem(BATCH_STORE);
    this.rows.clear();
    this.byJob.clear();
    this.seen.clear();
    this.rate = [];
    this.server = null;
    this.render();
  },
  add(files) {
    this.ensureBatch();
    let skipped = 0;
    for (const f of files) {
      const key = `${f.name}|${f.size}|${f.lastModified}`;
      if (this.seen.has(key)) { skipped++; continue; }
      this.seen.add(key);
      const row = { key, name: f.name, size: f.size, state: "uploading", upload: 0, file: f };
      this.rows.set(key, row);
      this.pending.push(row);
    }
    if (skipped) toast(`${skipped} × ${t("batch.skipped")}`);
    this.pump();
    this.render();
  },
  pump() {
    while (this.active < 4 && this.pending.length) {
      const row = this.pending.shift();
      this.active++;
      this.uploadOne(row).finally(() => { this.active--; this.pump(); this.render(); });
    }
  },
  async uploadOne(row) {
    const form = new FormData();
    for (const [k, v] of Object.entries(formOptions($("#batch-options")))) form.append(k, v);
    form.append("batch_id", this.batchId);
    form.append("files", row.file, row.name);
    try {
      const res = await upload("/api/jobs", form, (f) => { row.upload = f; this.renderRow(row); });
      row.jobId = res.jobs[0].id;
      row.state = "queued";
      row.file = null;
      this.byJob.set(row.jobId, row);
      this.poll();
    } catch (e) {
      row.state = "upload_failed";
      row.error = e.raw;
      row.errorCode = e.code;
    }
    this.renderRow(row);
  },
  async poll() {
    clearTimeout(this.timer);
    this.timer = null;
    if (currentPage !== "batch" || !this.batchId) return;
    try {
      const b = await api(`/api/batches/${this.batchId}`);
      this.server = b;
      for (const j of b.jobs) {
        let row = this.byJob.get(j.id);
        if (!row) {
          row = { key: `job:${j.id}`, name: j.filename, jobId: j.id };
          this.rows.set(row.key, row);
          this.byJob.set(j.id, row);
        }
        Object.assign(row, { state: j.state, progress: j.progress, error: j.error, errorCode: null, duration: j.duration, preview: j.preview });
      }
      const now = Date.now() / 1000;
      this.rate.push([now, b.progress]);
      while (this.rate.length > 2 && now - this.rate[0][0] > 60) this.rate.shift();
    } catch (e) {
      if (e.status === 404 && !this.active && !this.pending.length && !this.byJob.size) {
        /* empty new batch */
      } else if (e.status !== 404) toast(e.message, "error");
    }
    this.render();
    const busy = this.active || this.pending.length || (this.server && this.server.finished < this.server.total);
    if (currentPage === "batch") this.timer = setTimeout(() => this.poll(), busy ? 1500 : 5000);
  },
  eta() {
    const b = this.server;
    if (!b || b.finished >= b.total) return null;
    if (this.rate.length < 2) return undefined;
    const [t0, p0] = this.rate[0], [t1, p1] = this.rate[this.rate.length - 1];
    if (p1 <= p0 || t1 - t0 < 2) return undefined;
    return ((1 - p1) * (t1 - t0)) / (p1 - p0);
  },
  render() {
    const b = this.server;
    const stats = $("#batch-stats");
    const counts = b?.counts || {};
    const uploading = [...this.rows.values()].filter((r) => r.state === "uploading").length;
    const total = Math.max(b?.total || 0, this.rows.size);
    const eta = this.eta();
    const items = [
      [t("batch.files"), String(total)],
      [t("batch.done"), String(counts.done || 0), "ok"],
      [t("batch.failed"), String(counts.failed || 0), counts.failed ? "bad" : ""],
      [t("batch.running"), String((counts.running || 0) + (counts.queued || 0) + uploading)],
      [t("batch.audio"), fmtDuration(b?.audio_seconds_done || 0)],
      [t("batch.eta"), eta === null ? "–" : eta === undefined ? t("batch.eta.unknown") : fmtDuration(eta)],
    ];
    stats.replaceChildren(...items.map(([k, v, cls]) => el("div", { class: `stat ${cls || ""}` }, el("strong", { text: v }), el("span", { class: "muted small", text: k }))));
    const uploadFrac = [...this.rows.values()].reduce((a, r) => a + (r.state === "uploading" ? 0 : 1), 0) / (this.rows.size || 1);
    const prog = b ? b.progress * (b.total / (total || 1)) : 0;
    $("#batch-bar").style.width = `${Math.round((total ? prog : 0) * 100)}%`;
    $("#batch-bar").title = `upload ${Math.round(uploadFrac * 100)}%`;
    $("#batch-idline").textContent = this.batchId ? `${t("batch.id")} ${this.batchId}` : "";
    const exp = $("#batch-export");
    exp.href = this.batchId ? withKey(`/api/jobs/export?batch_id=${this.batchId}`) : "#";
    exp.classList.toggle("disabled", !counts.done);
    exp.setAttribute("aria-disabled", String(!counts.done));
    $("#batch-retry").disabled = ![...this.rows.values()].some((r) => this.retryable(r));
    $("#batch-cancel").disabled = !(counts.queued || counts.running);
    const tbody = $("#batch-table tbody");
    const order = [...this.rows.values()];
    tbody.replaceChildren(...order.map((r) => this.rowEl(r)));
    show($("#batch-empty"), order.length === 0);
  },
  rowEl(r) {
    const tr = el("tr", { dataset: { key: r.key, state: r.state } });
    this.fillRow(tr, r);
    return tr;
  },
  renderRow(r) {
    const tr = $$("#batch-table tbody tr").find((x) => x.dataset.key === r.key);
    if (tr) { tr.dataset.state = r.state; this.fillRow(tr, r); }
  },
  fillRow(tr, r) {
    const frac = r.state === "uploading" ? r.upload || 0 : ["done", "failed", "cancelled"].includes(r.state) ? 1 : r.state === "running" ? r.progress || 0 : 0;
    const actions = el("div", { class: "row" });
    if (r.jobId && (r.state === "queued" || r.state === "running"))
      actions.append(el("button", { type: "button", class: "ghost small", text: t("key.cancel"), onclick: () => this.cancel(r) }));
    if (this.retryable(r))
      actions.append(el("button", { type: "button", class: "ghost small", text: t("batch.retry.one"), onclick: () => this.retry(r) }));
    if (r.jobId && r.state === "done")
      actions.append(el("a", { class: "button ghost small", href: `#recognise/${r.jobId}`, text: t("hist.open") }));
    const details = r.error ? el("span", { class: "err", text: errorText(r.errorCode, r.error), title: r.error }) : el("span", { class: "muted", text: r.preview || (r.duration ? fmtDuration(r.duration) : r.size ? fmtBytes(r.size) : "") });
    tr.replaceChildren(
      el("td", { class: "fname", text: r.name }),
      el("td", {}, el("span", { class: `badge ${r.state}`, text: t(`state.${r.state}`) })),
      el("td", {}, el("div", { class: "bar-cell" },
        el("div", { class: `bar thin ${r.state}` }, el("div", { class: r.state === "running" && !frac ? "indeterminate" : null, style: `width:${Math.round(frac * 100)}%` })),
        el("span", { class: "pct small muted", text: r.state === "running" || r.state === "uploading" ? `${Math.round(frac * 100)}%` : "" }))),
      el("td", { class: "details" }, details),
      el("td", {}, actions));
  },
  // a corrupt or non-audio file fails the same way again: no retry is offered for it
  retryable(r) {
    return !!r.jobId && (r.state === "cancelled" || (r.state === "failed" && !isPermanentFailure(r.error)));
  },
  async cancel(r) {
    try { await api(`/api/jobs/${r.jobId}`, { method: "DELETE" }); this.byJob.delete(r.jobId); this.rows.delete(r.key); } catch (e) { toast(e.message, "error"); }
    this.poll();
  },
  async retry(r) {
    try { await api(`/api/jobs/${r.jobId}/retry`, { method: "POST" }); r.state = "queued"; r.error = null; } catch (e) { toast(e.message, "error"); }
    this.rate = [];
    this.poll();
  },
  async cancelAll() {
    for (const r of [...this.rows.values()]) if (r.jobId && (r.state === "queued" || r.state === "running")) await this.cancel(r);
  },
  async retryFailed() {
    for (const r of [...this.rows.values()]) if (this.retryable(r)) await api(`/api/jobs/${r.jobId}/retry`, { method: "POST" }).catch((e) => toast(e.message, "error"));
    this.rate = [];
    this.poll();
  },
};

// ---------------------------------------------------------------- History

pages.history = {
  cursor: null,
  selected: new Set(),
  init() {
    $("#hist-filters").addEventListener("submit", (e) => { e.preventDefault(); this.load(true); });
    let deb;
    $("#hist-q").addEventListener("input", () => { clearTimeout(deb); deb = setTimeout(() => this.load(true), 350); });
    $("#hist-state").addEventListener("change", () => this.load(true));
    $("#hist-more").addEventListener("click", () => this.load(false));
    $("#hist-back").addEventListener("click", () => { location.hash = "#history"; });
    $("#hist-all").addEventListener("change", (e) => {
      $$("#hist-table tbody input[type=checkbox]").forEach((c) => { c.checked = e.target.checked; c.dispatchEvent(new Event("change")); });
    });
  },
  enter() {
    const m = location.hash.match(/^#history\/([\w-]+)/);
    if (m) return this.detail(m[1]);
    show($("#hist-list-view"));
    show($("#hist-detail-view"), false);
    this.load(true);
  },
  params() {
    const fd = new FormData($("#hist-filters"));
    const p = new URLSearchParams();
    if (fd.get("q")) p.set("q", fd.get("q"));
    if (fd.get("state")) p.set("state", fd.get("state"));
    if (fd.get("since")) p.set("since", new Date(fd.get("since") + "T00:00:00").toISOString());
    if (fd.get("until")) p.set("until", new Date(fd.get("until") + "T23:59:59").toISOString());
    return p;
  },
  async load(reset) {
    const p = this.params();
    p.set("limit", "50");
    if (!reset && this.cursor) p.set("cursor", this.cursor);
    const token = (this.token = (this.token || 0) + 1);
    let res;
    try { res = await api(`/api/jobs?${p}`); } catch (e) { return toast(e.message, "error"); }
    if (token !== this.token) return;
    const tbody = $("#hist-table tbody");
    if (reset) { tbody.replaceChildren(); this.selected.clear(); $("#hist-all").checked = false; }
    tbody.append(...res.jobs.map((j) => this.rowEl(j)));
    this.cursor = res.next_cursor;
    show($("#hist-more"), !!this.cursor);
    show($("#hist-empty"), !tbody.children.length);
    this.updateExport();
  },
  rowEl(j) {
    const cb = el("input", { type: "checkbox", "aria-label": j.filename });
    cb.checked = this.selected.has(j.id);
    cb.addEventListener("change", () => { cb.checked ? this.selected.add(j.id) : this.selected.delete(j.id); this.updateExport(); });
    const open = el("a", { href: `#history/${j.id}`, class: "fname", text: j.filename || j.id });
    const del = el("button", { type: "button", class: "ghost small danger", text: t("hist.delete"), onclick: () => this.remove(j, tr) });
    const tr = el("tr", { dataset: { id: j.id } },
      el("td", {}, cb),
      el("td", { class: "nowrap", text: fmtDate(j.created_at) }),
      el("td", {}, open),
      el("td", { class: "nowrap", text: j.duration != null ? fmtTime(j.duration) : "–" }),
      el("td", { class: "nowrap", text: langName(j.language) }),
      el("td", { class: "preview" }, j.error ? el("span", { class: "err", text: errorText(null, j.error), title: j.error }) : el("span", { text: j.preview || "" })),
      el("td", {}, el("span", { class: `badge ${j.state}`, text: t(`state.${j.state}`) })),
      el("td", {}, del));
    return tr;
  },
  updateExport() {
    const a = $("#hist-export");
    const ids = [...this.selected];
    a.href = ids.length ? withKey(`/api/jobs/export?ids=${ids.join(",")}`) : "#";
    a.classList.toggle("disabled", !ids.length);
    a.setAttribute("aria-disabled", String(!ids.length));
    a.textContent = t("hist.export") + (ids.length ? ` (${ids.length})` : "");
  },
  async remove(j, tr) {
    if (!confirm(`${t("hist.delete.confirm")}\n\n${j.filename}`)) return;
    try {
      await api(`/api/jobs/${j.id}`, { method: "DELETE" });
      tr?.remove();
      this.selected.delete(j.id);
      this.updateExport();
      show($("#hist-empty"), !$("#hist-table tbody").children.length);
      if (location.hash.startsWith("#history/")) location.hash = "#history";
    } catch (e) { toast(e.message, "error"); }
  },
  async detail(id) {
    show($("#hist-list-view"), false);
    show($("#hist-detail-view"));
    const box = $("#hist-detail");
    box.replaceChildren(el("p", { class: "muted", text: "…" }));
    try {
      const job = await api(`/api/jobs/${id}`);
      if (job.state === "done") renderResult(box, job);
      else box.replaceChildren(el("div", { class: "card" }, el("h2", { text: job.filename }), el("p", {}, el("span", { class: `badge ${job.state}`, text: t(`state.${job.state}`) }), " ", job.error ? el("span", { class: "err", text: errorText(null, job.error), title: job.error }) : "")));
      box.firstChild.append(el("div", { class: "row end" }, el("button", { type: "button", class: "ghost small danger", text: t("hist.delete"), onclick: () => this.remove(job, null) })));
    } catch (e) { box.replaceChildren(el("p", { class: "alert error", text: e.message })); }
  },
};

// ---------------------------------------------------------------- VAD

pages.vad = {
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
    form.append("threshold", $("#vad-threshold").value);
    form.append("min_silence_ms", $("#vad-silence").value);
    form.append("speech_pad_ms", $("#vad-pad").value);
    form.append("max_segment_s", $("#vad-max").value);
    const token = (this.token = (this.token || 0) + 1);
    if (!this.result) $("#vad-stats").replaceChildren(el("span", { class: "muted", text: t("vad.computing") }));
    try {
      const res = await upload("/api/vad", form);
      if (token !== this.token) return;
      this.result = res;
      this.duration = this.duration || res.duration;
      $("#vad-canvas").dataset.threshold = Number(form.get("threshold")).toFixed(2);
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

// ---------------------------------------------------------------- System

pages.system = {
  history: [],
  init() {
    $("#sys-empty-cache").addEventListener("click", async () => {
      try {
        const r = await api("/api/system/empty-cache", { method: "POST" });
        const m = $("#sys-message");
        m.textContent = r.message || JSON.stringify(r);
        show(m);
      } catch (e) { toast(e.message, "error"); }
    });
    window.addEventListener("resize", () => this.chart());
  },
  enter() { this.poll(); },
  leave() { clearTimeout(this.timer); },
  async poll() {
    clearTimeout(this.timer);
    if (currentPage !== "system") return;
    try {
      const s = await api("/api/system");
      show($("#sys-error"), false);
      const now = Date.now() / 1000;
      const total = s.throughput?.audio_seconds_total || 0;
      const prev = this.history[this.history.length - 1];
      const rate = prev && now > prev.t ? Math.max(0, (total - prev.total) / (now - prev.t)) : 0;
      this.history.push({ t: now, total, rate });
      while (this.history.length && now - this.history[0].t > 300) this.history.shift();
      this.render(s, rate);
    } catch (e) {
      const b = $("#sys-error");
      b.textContent = e.message;
      show(b);
    }
    this.timer = setTimeout(() => this.poll(), 2000);
  },
  render(s, rate) {
    const tile = (k, v, id) => el("div", { class: "tile", dataset: { tile: id } }, el("span", { class: "muted small", text: k }), el("strong", { text: v }));
    $("#sys-tiles").replaceChildren(
      tile(t("sys.version"), s.version, "version"),
      tile(t("sys.device"), s.device, "device"),
      tile(t("sys.compute"), s.compute_type, "compute"),
      tile(t("sys.instances"), `${s.instances} × ${s.threads_per_instance}`, "instances"),
      tile(t("sys.batch"), String(s.max_batch_size), "batch"),
      tile(t("sys.memory"), `${Math.round(s.memory?.rss_mb || 0)} MB`, "rss"),
      tile(t("sys.gpu"), s.memory?.gpu_used_bytes ? fmtBytes(s.memory.gpu_used_bytes) : "–", "gpu"),
      tile(t("sys.queue"), String(s.queue?.jobs_waiting ?? 0), "queue"),
      tile(t("sys.streams"), `${s.streams?.open ?? 0} / ${s.streams?.max ?? "–"}`, "streams"),
      tile(t("sys.audio"), fmtDuration(s.throughput?.audio_seconds_total || 0), "audio"),
      tile(t("sys.uptime"), fmtDuration(s.throughput?.uptime_s || 0), "uptime"),
      tile(t("sys.keys"), s.keys_required ? t("sys.keys.on") : t("sys.keys.off"), "keys"));
    $("#sys-note").textContent = s.device_note || "";
    $("#sys-rate").textContent = `${rate.toFixed(2)} s/s`;
    $("#sys-jobs").replaceChildren(...Object.entries(s.jobs || {}).map(([k, v]) => el("div", { class: "stat" }, el("strong", { text: String(v) }), el("span", { class: "muted small", text: t(`state.${k}`) }))));
    this.renderModels(s.models || []);
    this.chart();
  },
  async renderModels(loaded) {
    let all = loaded.map((m) => ({ ...m }));
    try {
      const { models } = await api("/api/models");
      for (const m of models) if (!all.find((x) => x.id === m.id)) all.push({ id: m.id, loaded: m.loaded });
    } catch { /* the loaded list is enough */ }
    const tbody = $("#sys-models tbody");
    tbody.replaceChildren(...all.map((m) => {
      const q = m.queue || {};
      const st = m.stats || {};
      const btn = el("button", { type: "button", class: "ghost small", text: m.loaded ? t("sys.unload") : t("sys.load"), onclick: async (e) => {
        e.target.disabled = true;
        try { await api(`/api/models/${encodeURIComponent(m.id)}/${m.loaded ? "unload" : "load"}`, { method: "POST" }); } catch (err) { toast(err.message, "error"); }
        this.poll();
      } });
      return el("tr", {},
        el("td", { class: "fname", text: m.id }),
        el("td", {}, el("span", { class: `badge ${m.loaded ? "done" : "cancelled"}`, text: m.loaded ? t("sys.model.loaded") : t("sys.model.notloaded") })),
        el("td", { class: "nowrap", text: m.queue ? `${q.interactive ?? 0} / ${q.batch ?? 0} · ${t("sys.busy")} ${q.busy_instances ?? 0}` : "–" }),
        el("td", { class: "nowrap", text: m.stats ? `${st.batches ?? 0} / ${st.windows ?? 0} / ${(st.mean_batch_size ?? 0).toFixed ? (st.mean_batch_size ?? 0).toFixed(2) : st.mean_batch_size}` : "–" }),
        el("td", { class: "nowrap", text: m.stats ? fmtDuration(st.audio_seconds || 0) : "–" }),
        el("td", {}, btn));
    }));
  },
  chart() {
    const c = $("#sys-chart");
    if (!c.offsetParent) return;
    const [g, w, h] = sharpCanvas(c);
    g.clearRect(0, 0, w, h);
    const pts = this.history;
    const max = Math.max(1, ...pts.map((p) => p.rate)) * 1.15;
    g.strokeStyle = "#e2e8f0";
    g.fillStyle = "#94a3b8";
    g.font = "11px system-ui, sans-serif";
    for (let i = 0; i <= 4; i++) {
      const y = h - 18 - (i / 4) * (h - 28);
      g.beginPath(); g.moveTo(36, y); g.lineTo(w, y); g.stroke();
      g.fillText((max * i / 4).toFixed(1), 2, y + 4);
    }
    g.fillText("-5 min", 36, h - 4);
    g.fillText(lang() === "zh" ? "现在" : "now", w - 26, h - 4);
    if (pts.length < 2) return;
    const now = pts[pts.length - 1].t;
    const px = (tt) => 36 + ((tt - (now - 300)) / 300) * (w - 36);
    const py = (r) => h - 18 - (r / max) * (h - 28);
    g.beginPath();
    pts.forEach((p, i) => (i ? g.lineTo(px(p.t), py(p.rate)) : g.moveTo(px(p.t), py(p.rate))));
    g.strokeStyle = "#2563eb";
    g.lineWidth = 2;
    g.stroke();
    g.lineTo(px(now), h - 18);
    g.lineTo(px(pts[0].t), h - 18);
    g.fillStyle = "rgba(37, 99, 235, 0.12)";
    g.fill();
  },
};

// ---------------------------------------------------------------- boot

function boot() {
  applyStatic(document);
  $$(".lang-select").forEach((s) => langOptions(s));
  $$(".script-select").forEach(scriptOptions);
  $("#lang-switch").addEventListener("click", () => setLang(lang() === "zh" ? "en" : "zh"));
  $("#forget-key").addEventListener("click", () => { localStorage.removeItem(KEY_STORE); updateKeyButton(); });
  onLangChange(() => {
    $$(".lang-select").forEach((s) => langOptions(s));
    $$(".script-select").forEach(scriptOptions);
    document.title = `${t(`nav.${currentPage}`)} · tingxie`;
    pages.batch.render();
    pages.history.updateExport();
    if (currentPage === "history" && !location.hash.includes("/")) pages.history.load(true); // language names, reasons
    renderVadNotes();
    if (currentPage === "vad") { pages.vad.draw(); pages.vad.result && pages.vad.renderStats(); }
    if (!pages.realtime.finals.length) pages.realtime.renderText("");
    pages.realtime.setStatus(pages.realtime.state === "recording" ? "rt.listening" : "rt.idle", pages.realtime.state === "recording");
  });
  updateKeyButton();
  for (const p of Object.values(pages)) p.init?.();
  window.addEventListener("hashchange", () => {
    const name = location.hash.replace(/^#\/?/, "").split("/")[0];
    if (name === currentPage) { pages[name].enter?.(); return; }
    route();
  });
  route();
  document.body.classList.add("ready");
}

boot();
