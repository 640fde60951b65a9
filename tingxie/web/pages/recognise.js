// Recognise: one file, its options, progress, then the result.
import { t, lang, errorText } from "../i18n.js";
import { $, el, show, bindDrop } from "../lib/dom.js";
import { upload } from "../lib/api.js";
import { fmtBytes, fmtTime, fmtDuration } from "../lib/format.js";
import { Eta } from "../lib/progress.js";
import { formOptions } from "../lib/options.js";
import { modelSelector } from "../lib/models.js";
import { renderResult, pollJob } from "../lib/result.js";

let recToken = 0;
export default {
  file: null,
  init() {
    bindDrop($("#rec-drop"), $("#rec-file"), (files) => this.choose(files[0]));
    $("#rec-options").addEventListener("submit", (e) => { e.preventDefault(); this.submit(); });
    $("#rec-again").addEventListener("click", () => this.reset());
    this.refreshModels = modelSelector($("#rec-options"), "recognise");
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
  // a running job: audio decoded of the file's length, and the time left once measurable
  running(j) {
    const frac = j.progress || null;
    let extra = "";
    if (j.duration) {
      const eta = this.clock.update((j.progress || 0) * j.duration, j.duration);
      extra = `${t("prog.audio", { done: fmtTime((j.progress || 0) * j.duration), total: fmtTime(j.duration) })} · ${eta == null ? "" : eta === undefined ? t("prog.estimating") : t("prog.eta", { eta: fmtDuration(Math.round(eta)) })}`;
    }
    this.progress(t("rec.running"), frac, j.filename, extra);
  },
  progress(label, frac, name, extra = "") {
    show($("#rec-progress"));
    $("#rec-progress-eta").textContent = extra;
    $("#rec-progress-label").textContent = label;
    $("#rec-progress-pct").textContent = frac == null ? "" : `${Math.round(frac * 100)}%`;
    $("#rec-progress-bar").style.width = `${Math.round((frac ?? 0) * 100)}%`;
    $("#rec-progress-bar").classList.toggle("indeterminate", frac == null);
    if (name) $("#rec-progress-file").textContent = name;
  },
  async submit() {
    if (!this.file) return;
    const token = ++recToken;
    this.clock = new Eta();
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
        else if (j.state === "running") this.running(j);
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
    this.refreshModels();
    const m = location.hash.match(/^#recognise\/([\w-]+)/);
    if (m && !$("#rec-result").firstChild) {
      show($("#rec-form-wrap"), false);
      show($("#rec-again-wrap"));
      const token = ++recToken;
      this.clock = new Eta();
      try {
        const job = await pollJob(m[1], (j) => j.state === "running" ? this.running(j) : j.state !== "done" && this.progress(t("rec.queued"), null, j.filename), () => token !== recToken);
        if (job && token === recToken) this.finish(job);
      } catch (e) { this.fail(e.message); }
    }
  },
};
