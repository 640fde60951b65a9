// Real-time: microphone → AudioWorklet (16 kHz PCM) → /v1/stream WebSocket → partials and finals.
import { t, errorText } from "../i18n.js";
import { $, el, show, copyText, downloadBlob } from "../lib/dom.js";
import { api, withKey, askKey } from "../lib/api.js";
import { fmtTime, srtTime } from "../lib/format.js";
import { modelSelector } from "../lib/models.js";

export default {
  state: "idle",
  finals: [],
  init() {
    $("#rt-start").addEventListener("click", () => this.start());
    $("#rt-stop").addEventListener("click", () => this.stop());
    $("#rt-copy").addEventListener("click", () => copyText(this.finals.map((f) => f.text).join("\n")));
    $("#rt-txt").addEventListener("click", () => downloadBlob("dictation.txt", this.finals.map((f) => f.text).join("\n") + "\n"));
    $("#rt-srt").addEventListener("click", () => downloadBlob("dictation.srt", this.finals.map((f, i) => `${i + 1}\n${srtTime(f.start)} --> ${srtTime(f.end)}\n${f.text}\n`).join("\n")));
    $("#rt-clear").addEventListener("click", () => { this.finals = []; this.renderText(""); });
    this.refreshModels = modelSelector($(".rt-controls"), "realtime");
  },
  enter() { this.refreshModels(); },
  relabel() {
    if (!this.finals.length) this.renderText("");
    this.setStatus(this.state === "recording" ? "rt.listening" : "rt.idle", this.state === "recording");
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
    $("#rt-model").disabled = true; // a session keeps the model it started with
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
      ws.send(JSON.stringify({ model: $("#rt-model").value || null, language: $("#rt-language").value === "auto" ? null : $("#rt-language").value, itn: $("#rt-itn").checked, zh_script: $("#rt-script").value, sample_rate: 16000, partials: true }));
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
        if (hasKeys && this.state !== "idle" && (await askKey({ code: "missing_api_key", raw: e.reason, status: 401 }))) return this.openSocket(true);
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
    $("#rt-model").disabled = false;
    $("#rt-stop").disabled = true;
    this.setStatus("rt.idle");
  },
  meter(level) {
    const pct = Math.min(100, Math.round(Math.sqrt(level || 0) * 250));
    $("#rt-meter").style.width = `${pct}%`;
    $(".meter").setAttribute("aria-valuenow", pct);
  },
};
