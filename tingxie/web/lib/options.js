// The option controls of Recognise, Batch and Real-time: language and script lists, and
// the form fields an upload sends.
import { t, langName } from "../i18n.js";
import { el } from "./dom.js";
import { carriedVad } from "./vad-settings.js";

export const ALL_LANGS = ["auto", "zh", "en", "yue", "ja", "ko", "fr", "de", "es", "ru"];

// Languages offered for a model: ours, in our order, that it has (whisper-base has no
// Cantonese); its own list when it has none of ours; all of ours when it names none.
export function languagesOf(model) {
  const have = model?.languages;
  if (!Array.isArray(have) || !have.length) return ALL_LANGS;
  const ours = ALL_LANGS.filter((l) => l === "auto" || have.includes(l));
  return ours.length > 1 ? ours : ["auto", ...have];
}

// `select.langs`: the languages of the model chosen beside it (lib/models.js).
export function langOptions(select, withAuto = true) {
  const langs = select.langs || ALL_LANGS;
  const keep = select.value;
  select.replaceChildren(...langs.filter((l) => withAuto || l !== "auto").map((l) => el("option", { value: l, text: langName(l) })));
  if (keep && langs.includes(keep)) select.value = keep;
}

export function scriptOptions(select) {
  const keep = select.value;
  select.replaceChildren(...["hans", "hant", "keep"].map((v) => el("option", { value: v, text: t(`opt.script.${v}`) })));
  if (keep) select.value = keep;
}

// Mix down, or transcribe each channel on its own (call recordings: one speaker per channel).
export function channelOptions(select) {
  const keep = select.value;
  select.replaceChildren(...["mix", "split"].map((v) => el("option", { value: v, text: t(`opt.channels.${v}`) })));
  if (keep) select.value = keep;
}

// Hotwords may be typed with spaces or commas (either kind): with a comma anywhere, commas
// separate (so "New York, Hong Kong" keeps its phrases); otherwise spaces do. Sent comma-separated.
function normaliseHotwords(value) {
  const s = String(value || "").trim();
  if (!s) return "";
  const parts = /[,，、;；]/.test(s) ? s.split(/[,，、;；]/) : s.split(/\s+/);
  return parts.map((w) => w.trim()).filter(Boolean).join(",");
}

// The form fields of POST /api/jobs. Controls the chosen model lacks are disabled, so
// FormData leaves them out.
export function formOptions(form) {
  const fd = new FormData(form);
  const out = {};
  for (const name of ["language", "hotwords", "zh_script", "model", "channels"]) {
    const v = name === "hotwords" ? normaliseHotwords(fd.get(name)) : fd.get(name);
    if (v && !(name === "language" && v === "auto")) out[name] = v;
  }
  if (fd.get("translate")) out.task = "translate";
  if (fd.get("word_timestamps")) out.word_timestamps = "true";
  out.itn = form.elements.itn.checked ? "true" : "false";
  Object.assign(out, carriedVad() || {});
  return out;
}
