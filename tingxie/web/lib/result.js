// A finished job as the user sees it (Recognise and History), and following a job until it ends.
import { t, lang, langName } from "../i18n.js";
import { el, show, copyText, downloadBlob, toast } from "./dom.js";
import { api, withKey } from "./api.js";
import { fmtTime, fmtDuration, fmtSeconds } from "./format.js";

const VIEW_STORE = "tingxie.resultView"; // "paragraphs" (default) or "segments"
export const PARA_GAP_S = 2.0; // a pause this long starts a new paragraph

// Segments joined into paragraphs: sentences run on; a pause of PARA_GAP_S or more, or a
// change of speaker or channel, starts a new one. Each paragraph keeps its segments' times.
export function paragraphs(segs) {
  const out = [];
  for (const s of segs) {
    const last = out[out.length - 1];
    const who = s.speaker || null, ch = s.channel || null;
    if (!last || s.start - last.end >= PARA_GAP_S || who !== last.speaker || ch !== last.channel)
      out.push({ start: s.start, end: s.end, speaker: who, channel: ch, segs: [s] });
    else { last.segs.push(s); last.end = Math.max(last.end, s.end); }
  }
  return out;
}

const CJK = /[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]/;
// Chinese (and full-width punctuation) joins without a space; other languages with one.
function joinText(parts) {
  let out = "";
  for (const p of parts.map((x) => x.trim()).filter(Boolean)) {
    out += out && !(CJK.test(out.slice(-1)) || CJK.test(p[0])) ? " " + p : p;
  }
  return out;
}

function segText(s) {
  return (s.flags || []).includes("no_text") ? t("res.nospeech") : s.text;
}

// A speaker's label: the name given in History, else "Speaker 1" for SPEAKER_1.
function speakerName(id, names) {
  if (!id) return "";
  if (names[id]) return names[id];
  const n = String(id).match(/(\d+)$/);
  return n ? `${t("res.speaker")} ${Number(n[1])}` : id;
}

function speakerIndex(id, order) {
  const i = order.indexOf(id);
  return (i < 0 ? 0 : i) % 6 + 1;
}

// The paragraph text as Copy and TXT give it: "Name: text" per paragraph when speakers are known.
export function paragraphText(paras, names) {
  const sep = lang() === "zh" ? "：" : ": ";
  return paras.map((p) => {
    const body = joinText(p.segs.map(segText));
    if (p.speaker) return `${speakerName(p.speaker, names)}${sep}${body}`;
    if (p.channel) return `CH${p.channel}${sep}${body}`;
    return body;
  }).join("\n\n");
}

function speakerNames(job) {
  const list = job.result?.speakers || job.speakers || [];
  return Object.fromEntries(list.filter((s) => s && s.id).map((s) => [s.id, s.name || ""]).filter(([, n]) => n));
}

// Renders a finished job: player + paragraphs (or segments) + copy + downloads.
// `opts.rename`: offer renaming the speakers (History).
export function renderResult(container, job, opts = {}) {
  const r = job.result || {};
  const segs = r.segments || [];
  const names = speakerNames(job);
  const speakers = [...new Set(segs.map((s) => s.speaker).filter(Boolean))];
  const audio = el("audio", { controls: true, preload: "metadata", src: withKey(`/api/jobs/${job.id}/audio`) });
  audio.addEventListener("error", () => show(noAudio, true));
  const noAudio = el("p", { class: "muted small hidden", text: t("res.noaudio") });
  const fullText = r.text ?? segs.map((s) => s.text).join(" ");
  const play = (at) => { audio.currentTime = at + 0.001; audio.play().catch(() => {}); };
  const clickable = (node, at) => {
    node.addEventListener("click", () => play(at));
    node.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); play(at); } });
    return node;
  };

  // the per-segment view
  const list = el("ol", { class: "segments", "aria-label": t("res.segments") });
  const items = segs.map((s) => clickable(el("li", { class: "segment", tabindex: "0", dataset: { start: s.start, end: s.end } },
    el("span", { class: "ts", text: `${fmtTime(s.start)} – ${fmtTime(s.end)}` }),
    (s.flags || []).includes("no_text")
      ? el("span", { class: "seg-text muted", text: t("res.nospeech") })
      : el("span", { class: "seg-text" }, speakerLabel(s.speaker, names, speakers), channelLabel(s.channel), s.text)), s.start));
  list.append(...items);
  const segView = el("div", { class: "view-segments" }, list,
    el("details", { class: "fulltext" }, el("summary", { text: t("res.fulltext") }), el("p", { class: "plain", text: fullText })));

  // the paragraph view (the default): times on hover (title) and shown beside each paragraph
  const paras = paragraphs(segs);
  const paraEls = paras.map((p) => clickable(el("div", { class: "para", tabindex: "0", title: `${fmtTime(p.start)} – ${fmtTime(p.end)}`, dataset: { start: p.start, end: p.end } },
    el("div", { class: "para-head" },
      speakerLabel(p.speaker, names, speakers), channelLabel(p.channel),
      el("span", { class: "ts", text: `${fmtTime(p.start)} – ${fmtTime(p.end)}` })),
    el("p", { class: "para-text" }, ...p.segs.map((s, i) => el("span", { class: (s.flags || []).includes("no_text") ? "muted" : null, title: `${fmtTime(s.start)} – ${fmtTime(s.end)}` },
      (i && !(CJK.test(segText(p.segs[i - 1]).trim().slice(-1)) || CJK.test(segText(s).trim()[0] || "")) ? " " : "") + segText(s).trim())))), p.start));
  const paraView = el("div", { class: "paragraphs", "aria-label": t("res.view.paragraphs") }, ...paraEls);
  const paraPlain = () => paragraphText(paras, names);

  let view = localStorage.getItem(VIEW_STORE) === "segments" ? "segments" : "paragraphs";
  const viewBtns = ["paragraphs", "segments"].map((v) => el("button", { type: "button", class: "ghost small view-btn", dataset: { view: v }, text: t(`res.view.${v}`), onclick: () => setView(v) }));
  const setView = (v) => {
    view = v;
    localStorage.setItem(VIEW_STORE, v);
    show(paraView, v === "paragraphs");
    show(segView, v === "segments");
    viewBtns.forEach((b) => { b.setAttribute("aria-pressed", String(b.dataset.view === v)); b.classList.toggle("on", b.dataset.view === v); });
    hint.textContent = segs.length ? t(v === "paragraphs" ? "res.para.hint" : "res.click") : "";
  };

  let last = null;
  audio.addEventListener("timeupdate", () => {
    const now = audio.currentTime;
    const pool = view === "paragraphs" ? paraEls : items;
    const hit = pool.find((n) => now >= Number(n.dataset.start) && now < Number(n.dataset.end)) || null;
    if (hit === last) return;
    last?.classList.remove("playing");
    last = hit;
    if (hit) { hit.classList.add("playing"); hit.scrollIntoView({ block: "nearest", behavior: "smooth" }); }
  });
  const stem = (job.filename || job.id).replace(/\.[^.]+$/, "");
  const dl = ["txt", "srt", "vtt", "json"].map((f) => {
    const a = el("a", { class: "button ghost small", href: withKey(`/api/jobs/${job.id}/result?format=${f}`), download: `${stem}.${f}`, text: f.toUpperCase(), dataset: { format: f } });
    // TXT follows the view: the paragraphs as shown (the segment view: the server's text)
    if (f === "txt") a.addEventListener("click", (e) => { if (view === "paragraphs" && paras.length) { e.preventDefault(); downloadBlob(`${stem}.txt`, paraPlain() + "\n"); } });
    return a;
  });
  // split by channel: each channel's language; asked to split a file with nothing to split: say so
  const split = (r.channels || []).length > 0;
  const notSplit = !split && job.options?.channels === "split";
  const translated = job.options?.task === "translate";
  const languages = split ? r.channels.map((c) => `CH${c.channel} ${langName(c.language)}`).join(" · ")
    : translated ? t("res.translated", { from: langName(r.language || job.language), to: langName("en") }) : langName(r.language || job.language);
  const warnings = (r.warning_count || 0) - (notSplit ? 1 : 0); // that warning is the note below
  const meta = el("div", { class: "meta" },
    metaItem(t("res.model"), r.model || job.model || "–"),
    metaItem(t("res.language"), languages),
    split || notSplit ? metaItem(t("opt.channels"), split ? `${t("opt.channels.split")} (${r.channels.length})` : t("opt.channels.mix")) : null,
    metaItem(t("res.duration"), fmtDuration(r.duration ?? job.duration)),
    metaItem(t("res.processing"), r.processing_time != null ? fmtSeconds(r.processing_time) : "–"),
    metaItem(t("res.rtf"), r.rtf ? t("res.realtime", { x: (1 / r.rtf).toFixed(1) }) : "–"));
  const hint = el("span", { class: "muted small" });
  const body = segs.length ? [paraView, segView] : [el("p", { class: "empty", text: t("res.empty") })];
  const card = el("div", { class: "card result", dataset: { jobId: job.id } },
    el("div", { class: "row between wrap" },
      el("h2", { class: "filename", text: job.filename || job.id }),
      el("div", { class: "row wrap" },
        el("button", { type: "button", class: "ghost small copy", text: t("res.copy"), onclick: () => copyText(view === "paragraphs" && paras.length ? paraPlain() : fullText) }),
        el("span", { class: "muted small", text: t("res.download") }), ...dl)),
    meta,
    warnings > 0 ? el("p", { class: "alert error no-text-warning", role: "status", text: t("res.nospeech.warning", { n: warnings }) }) : null,
    notSplit ? el("p", { class: "alert info not-split", role: "status", text: t("res.notsplit") }) : null,
    el("div", { class: "player" }, audio, noAudio, hint,
      segs.length ? el("span", { class: "view-switch row", role: "group", "aria-label": t("res.view") }, ...viewBtns) : null),
    opts.rename && speakers.length ? renameControl(job, speakers, names, container, opts) : null,
    ...body);
  if (segs.length) setView(view);
  container.replaceChildren(card);
  return card;
}

// Speakers (diarization): a label and a colour per speaker, the name from `speakers`.
function speakerLabel(id, names, order) {
  if (!id) return null;
  return el("span", { class: `spk spk-${speakerIndex(id, order)}`, text: speakerName(id, names), dataset: { speaker: id } });
}

// History: name the speakers (PUT /api/jobs/{id}/speakers {"SPEAKER_1": "张三"}).
function renameControl(job, speakers, names, container, opts) {
  const inputs = speakers.map((id) => el("input", { type: "text", value: names[id] || "", placeholder: speakerName(id, {}), "aria-label": speakerName(id, {}), dataset: { speaker: id } }));
  const box = el("details", { class: "rename" }, el("summary", { text: t("res.rename") }),
    el("form", { class: "row wrap", onsubmit: async (e) => {
      e.preventDefault();
      const body = Object.fromEntries(inputs.map((i) => [i.dataset.speaker, i.value.trim()]));
      try {
        const updated = await api(`/api/jobs/${job.id}/speakers`, { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
        toast(t("res.rename.saved"));
        const fresh = updated && updated.id ? updated : await api(`/api/jobs/${job.id}`);
        renderResult(container, fresh, opts);
      } catch (err) {
        toast([404, 405].includes(err.status) ? t("res.rename.unavailable") : err.message, "error");
      }
    } }, ...inputs, el("button", { type: "submit", class: "primary small", text: t("res.rename.save") })));
  return box;
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
