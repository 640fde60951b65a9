// VAD settings the VAD page carries to Recognise and Batch (sent as the vad_* form fields).
import { t } from "../i18n.js";
import { $, $$, show } from "./dom.js";
import { api } from "./api.js";

export const VAD_STORE = "tingxie.vad";

// [slider id, form field of POST /api/jobs, tingxie's VadOptions value as the fallback]
export const VAD_FIELDS = [["vad-threshold", "vad_threshold", 0.5], ["vad-silence", "vad_min_silence_ms", 2000],
  ["vad-pad", "vad_speech_pad_ms", 300], ["vad-max", "vad_max_segment_s", 29]];
export let vadDefaults = null;

// What transcription uses when no VAD field is sent: the defaults the server publishes for
// POST /api/jobs in its own OpenAPI schema, so the VAD page cannot drift from them.
export async function loadVadDefaults() {
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

export function carriedVad() {
  try { return JSON.parse(localStorage.getItem(VAD_STORE) || "null"); } catch { return null; }
}

export function renderVadNotes() {
  const v = carriedVad();
  $$(".vad-note").forEach((n) => {
    show(n, !!v);
    if (v) $(".vad-note-text", n).textContent = t("opt.vad.custom", { threshold: Number(v.vad_threshold).toFixed(2), silence: v.vad_min_silence_ms, pad: v.vad_speech_pad_ms, max: v.vad_max_segment_s });
  });
}
