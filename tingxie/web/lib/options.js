// The option controls of Recognise, Batch and Real-time: language and script lists, and
// the form fields an upload sends.
import { t, langName } from "../i18n.js";
import { $$, el } from "./dom.js";
import { carriedVad } from "./vad-settings.js";

export const ALL_LANGS = ["auto", "zh", "en", "yue", "ja", "ko", "fr", "de", "es", "ru"];
export let LANGS = ALL_LANGS; // narrowed to the languages the default model has (modelLanguages)

export function langOptions(select, withAuto = true) {
  const keep = select.value;
  select.replaceChildren(...LANGS.filter((l) => withAuto || l !== "auto").map((l) => el("option", { value: l, text: langName(l) })));
  if (keep) select.value = keep;
}

// Offer only languages the default model can transcribe (whisper-base has no Cantonese).
export function modelLanguages(models) {
  const m = models.find((x) => x.default) || models[0];
  if (!m || !Array.isArray(m.languages) || !m.languages.length) return;
  LANGS = ALL_LANGS.filter((l) => l === "auto" || m.languages.includes(l));
  $$(".lang-select").forEach((s) => langOptions(s));
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
export function normaliseHotwords(value) {
  const s = String(value || "").trim();
  if (!s) return "";
  const parts = /[,，、;；]/.test(s) ? s.split(/[,，、;；]/) : s.split(/\s+/);
  return parts.map((w) => w.trim()).filter(Boolean).join(",");
}

export function formOptions(form) {
  const fd = new FormData(form);
  const out = {};
  for (const name of ["language", "hotwords", "zh_script", "model", "channels"]) {
    const v = name === "hotwords" ? normaliseHotwords(fd.get(name)) : fd.get(name);
    if (v && !(name === "language" && v === "auto")) out[name] = v;
  }
  out.itn = form.elements.itn.checked ? "true" : "false";
  Object.assign(out, carriedVad() || {});
  return out;
}
