// A finished job as the user sees it (Recognise and History), and following a job until it ends.
import { t, lang, langName } from "../i18n.js";
import { el, show, copyText } from "./dom.js";
import { api, withKey } from "./api.js";
import { fmtTime, fmtDuration } from "./format.js";

// Renders a finished job: player + clickable segments + copy + downloads.
export function renderResult(container, job) {
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
        : el("span", { class: "seg-text" }, channelLabel(s.channel), s.text));
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
  // split by channel: each channel's language; asked to split a file with nothing to split: say so
  const split = (r.channels || []).length > 0;
  const notSplit = !split && job.options?.channels === "split";
  const languages = split ? r.channels.map((c) => `CH${c.channel} ${langName(c.language)}`).join(" · ") : langName(r.language || job.language);
  const warnings = (r.warning_count || 0) - (notSplit ? 1 : 0); // that warning is the note below
  const meta = el("div", { class: "meta" },
    metaItem(t("res.model"), r.model || job.model || "–"),
    metaItem(t("res.language"), languages),
    split || notSplit ? metaItem(t("opt.channels"), split ? `${t("opt.channels.split")} (${r.channels.length})` : t("opt.channels.mix")) : null,
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
    warnings > 0 ? el("p", { class: "alert error no-text-warning", role: "status", text: (lang() === "zh" ? `注意：${warnings} 处检测到的语音没有识别出文字（已在分段中标出）` : `Warning: ${warnings} stretch(es) of detected speech gave no text (marked in the segments)`) }) : null,
    notSplit ? el("p", { class: "alert info not-split", role: "status", text: t("res.notsplit") }) : null,
    el("div", { class: "player" }, audio, noAudio, el("span", { class: "muted small", text: segs.length ? t("res.click") : "" })),
    body,
    el("details", { class: "fulltext" }, el("summary", { text: lang() === "zh" ? "全文" : "Full text" }), el("p", { class: "plain", text: fullText })));
  container.replaceChildren(card);
  return card;
}

// The channel a segment was said on (channels=split): CH1, CH2… as in the downloads.
function channelLabel(channel) {
  if (!channel) return null;
  return el("span", { class: `ch ch-${Math.min(channel, 4)}`, text: `CH${channel}`, title: t("res.channel", { n: channel }) });
}

export function metaItem(label, value) {
  return el("div", {}, el("span", { class: "muted small", text: label }), el("strong", { text: value }));
}

export async function pollJob(id, onUpdate, isStale = () => false) {
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
