// System: device, memory, queue, throughput chart and the models table.
import { t } from "../i18n.js";
import { $, el, show, toast, sharpCanvas } from "../lib/dom.js";
import { api } from "../lib/api.js";
import { fmtBytes, fmtDuration } from "../lib/format.js";
import { currentPage } from "../lib/router.js";
import { modelGuide } from "../lib/models.js";

// The server's device notes (tingxie/device.py), in the page's language.
function deviceNote(note) {
  if (!note) return "";
  if (note.startsWith("mps requested")) return t("sys.note.mps");
  return note;
}

export default {
  history: [],
  init() {
    $("#sys-empty-cache").addEventListener("click", async () => {
      try {
        const r = await api("/api/system/empty-cache", { method: "POST" });
        const m = $("#sys-message");
        m.textContent = t(r.freed ? "sys.cache.freed" : "sys.cache.cpu");
        show(m);
      } catch (e) { toast(e.message, "error"); }
    });
    window.addEventListener("resize", () => this.chart());
  },
  enter() { this.poll(); },
  relabel() { if (currentPage() === "system") this.poll(); },
  leave() { clearTimeout(this.timer); },
  async poll() {
    clearTimeout(this.timer);
    if (currentPage() !== "system") return;
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
    // a GPU cache exists only on a GPU
    show($("#sys-empty-cache"), !String(s.device || "").toLowerCase().startsWith("cpu"));
    $("#sys-note").textContent = deviceNote(s.device_note);
    $("#sys-rate").textContent = `${rate.toFixed(2)} ${t("sys.rate.unit")}`;
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
    $("#sys-guide-body").replaceChildren(modelGuide(all.map((m) => m.id)));
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
    g.fillText(t("sys.chart.ago"), 36, h - 4);
    g.textAlign = "right";
    g.fillText(t("sys.chart.now"), w - 2, h - 4);
    g.textAlign = "left";
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
