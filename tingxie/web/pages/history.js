// History: search, open, export and delete past jobs.
import { t, lang, langName, errorText } from "../i18n.js";
import { $, $$, el, show, toast } from "../lib/dom.js";
import { api, withKey } from "../lib/api.js";
import { fmtTime, fmtDate } from "../lib/format.js";
import { renderResult } from "../lib/result.js";
import { currentPage } from "../lib/router.js";
import { exportLocale } from "./batch.js";

// The language heard, and for a translated job the language written: "中文 → 英语".
function languages(j) {
  if (j.options?.task === "translate") return t("res.translated", { from: langName(j.language), to: langName("en") });
  return langName(j.language);
}

export default {
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
  relabel() {
    this.updateExport();
    if (currentPage() === "history" && !location.hash.includes("/")) this.load(true); // language names, reasons
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
      el("td", { class: "nowrap", text: languages(j) }),
      el("td", { class: "preview" }, j.error ? el("span", { class: "err", text: errorText(null, j.error), title: lang() === "en" ? j.error : null })
        : j.snippet ? el("span", { class: "snippet", title: t("hist.match") }, j.snippet.before, el("mark", { text: j.snippet.match }), j.snippet.after)
        : el("span", { text: j.preview || "" })),
      el("td", {}, el("span", { class: `badge ${j.state}`, text: t(`state.${j.state}`) })),
      el("td", {}, del));
    return tr;
  },
  updateExport() {
    const a = $("#hist-export");
    const ids = [...this.selected];
    a.href = ids.length ? withKey(`/api/jobs/export?ids=${ids.join(",")}&${exportLocale()}`) : "#";
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
      if (job.state === "done") renderResult(box, job, { rename: true });
      else box.replaceChildren(el("div", { class: "card" }, el("h2", { text: job.filename }), el("p", {}, el("span", { class: `badge ${job.state}`, text: t(`state.${job.state}`) }), " ", job.error ? el("span", { class: "err", text: errorText(null, job.error), title: lang() === "en" ? job.error : null }) : "")));
      box.firstChild.append(el("div", { class: "row end" }, el("button", { type: "button", class: "ghost small danger", text: t("hist.delete"), onclick: () => this.remove(job, null) })));
    } catch (e) { box.replaceChildren(el("p", { class: "alert error", text: e.message })); }
  },
};
