// Batch: many files uploaded four at a time into one batch, followed until all are done.
import { t, lang, errorText, isPermanentFailure } from "../i18n.js";
import { $, $$, el, show, toast, bindDrop } from "../lib/dom.js";
import { api, upload, withKey } from "../lib/api.js";
import { fmtDuration, fmtBytes, fmtTime } from "../lib/format.js";
import { Eta } from "../lib/progress.js";
import { formOptions } from "../lib/options.js";
import { modelSelector } from "../lib/models.js";
import { currentPage } from "../lib/router.js";

const BATCH_STORE = "tingxie.batchId";

// summary.csv in the UI's language and the browser's time zone
export function exportLocale() {
  let tz = "";
  try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch { /* the server's zone */ }
  return `lang=${lang()}` + (tz ? `&tz=${encodeURIComponent(tz)}` : "");
}

export default {
  rows: new Map(), // key -> {key, name, size, state, upload, jobId, error}
  byJob: new Map(),
  seen: new Set(),
  pending: [],
  active: 0,
  timer: null,
  clock: new Eta(),
  init() {
    this.batchId = localStorage.getItem(BATCH_STORE) || null;
    bindDrop($("#batch-drop"), $("#batch-files"), (files) => this.add(files));
    $("#batch-new").addEventListener("click", () => this.newBatch());
    $("#batch-cancel").addEventListener("click", () => this.cancelAll());
    $("#batch-retry").addEventListener("click", () => this.retryFailed());
    this.refreshModels = modelSelector($("#batch-options"), "batch");
    this.render();
  },
  enter() { this.poll(); this.refreshModels(); },
  relabel() { this.render(); },
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
    this.clock.reset();
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
    if (currentPage() !== "batch" || !this.batchId) return;
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
      this.etaS = this.clock.update(b.audio_seconds_decoded ?? b.progress, b.audio_seconds_total ?? 1);
    } catch (e) {
      if (e.status === 404 && !this.active && !this.pending.length && !this.byJob.size) {
        /* empty new batch */
      } else if (e.status !== 404) toast(e.message, "error");
    }
    this.render();
    const busy = this.active || this.pending.length || (this.server && this.server.finished < this.server.total);
    if (currentPage() === "batch") this.timer = setTimeout(() => this.poll(), busy ? 1500 : 5000);
  },
  // seconds left from the measured throughput (lib/progress.js); null when nothing runs
  eta() {
    const b = this.server;
    if (!b || b.finished >= b.total) return null;
    return this.etaS;
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
      [t("batch.audio.of"), b?.audio_seconds_total ? `${fmtDuration(b.audio_seconds_decoded || 0)} / ${fmtDuration(b.audio_seconds_total)}` : fmtDuration(b?.audio_seconds_done || 0), "", "decoded"],
      [t("batch.eta"), eta === null ? "–" : eta === undefined ? t("batch.eta.unknown") : fmtDuration(Math.round(eta)), "eta", "eta"],
    ];
    stats.replaceChildren(...items.map(([k, v, cls, id]) => el("div", { class: `stat ${cls || ""}`, dataset: id === "eta" && eta != null ? { stat: id, seconds: String(Math.round(eta)) } : { stat: id || "" } }, el("strong", { text: v }), el("span", { class: "muted small", text: k }))));
    const uploadFrac = [...this.rows.values()].reduce((a, r) => a + (r.state === "uploading" ? 0 : 1), 0) / (this.rows.size || 1);
    const prog = b ? b.progress * (b.total / (total || 1)) : 0;
    $("#batch-bar").style.width = `${Math.round((total ? prog : 0) * 100)}%`;
    $("#batch-bar").title = `${t("state.uploading")} ${Math.round(uploadFrac * 100)}%`;
    $("#batch-idline").textContent = this.batchId ? `${t("batch.id")} ${this.batchId}` : "";
    const exp = $("#batch-export");
    exp.href = this.batchId ? withKey(`/api/jobs/export?batch_id=${this.batchId}&${exportLocale()}`) : "#";
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
    // one way to open a job everywhere: its file name, as in History
    const name = r.jobId && r.state === "done" ? el("a", { class: "fname", href: `#history/${r.jobId}`, text: r.name }) : r.name;
    const running = r.state === "running" && r.duration;
    const details = r.error ? el("span", { class: "err", text: errorText(r.errorCode, r.error), title: lang() === "en" ? r.error : null })
      : running ? el("span", { class: "muted audio-done", text: t("prog.audio", { done: fmtTime((r.progress || 0) * r.duration), total: fmtTime(r.duration) }) })
      : el("span", { class: "muted", text: r.preview || (r.duration ? fmtDuration(r.duration) : r.size ? fmtBytes(r.size) : "") });
    tr.replaceChildren(
      el("td", { class: "fname" }, name),
      el("td", {}, el("span", { class: `badge ${r.state}`, text: t(`state.${r.state}`) })),
      el("td", {}, el("div", { class: "bar-cell" },
        el("div", { class: `bar thin ${r.state}` }, el("div", { class: r.state === "running" && !frac ? "indeterminate" : null, style: `width:${Math.round(frac * 100)}%` })),
        el("span", { class: "pct small muted", dataset: r.state === "running" ? { frac: String(frac) } : {}, text: r.state === "running" || r.state === "uploading" ? `${Math.round(frac * 100)}%` : "" }))),
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
    this.clock.reset();
    this.poll();
  },
  async cancelAll() {
    for (const r of [...this.rows.values()]) if (r.jobId && (r.state === "queued" || r.state === "running")) await this.cancel(r);
  },
  async retryFailed() {
    for (const r of [...this.rows.values()]) if (this.retryable(r)) await api(`/api/jobs/${r.jobId}/retry`, { method: "POST" }).catch((e) => toast(e.message, "error"));
    this.clock.reset();
    this.poll();
  },
};
