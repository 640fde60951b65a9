// Times, durations, dates and sizes as the pages show them.
import { lang } from "../i18n.js";

export function fmtTime(s, ms = false) {
  s = Math.max(0, s || 0);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  const frac = ms ? "." + String(Math.floor((s % 1) * 10)) : "";
  const mmss = `${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}${frac}`;
  return h ? `${h}:${mmss}` : mmss;
}

// Units in the page's language: "9.5 s" / "9.5 秒", "1 min 8 s" / "1 分 8 秒".
const UNITS = { en: { s: " s", min: " min ", h: " h" }, zh: { s: " 秒", min: " 分 ", h: " 小时" } };

export function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  const u = UNITS[lang()] || UNITS.en;
  if (s < 60) return `${s.toFixed(1)}${u.s}`;
  if (s < 3600) return `${Math.floor(s / 60)}${u.min}${Math.round(s % 60)}${u.s}`;
  return `${(s / 3600).toFixed(2)}${u.h}`;
}

// Seconds as a whole number with the unit (the batch's time left: "12 s" / "12 秒").
export function fmtSeconds(s, digits = 1) {
  const u = UNITS[lang()] || UNITS.en;
  return `${Number(s).toFixed(digits)}${u.s}`;
}

export function fmtDate(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return d.toLocaleString(lang() === "zh" ? "zh-CN" : undefined, { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1e6) return `${(n / 1e3).toFixed(0)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

export function srtTime(s, sep = ",") {
  const ms = Math.round(s * 1000);
  const h = Math.floor(ms / 3600000), m = Math.floor((ms % 3600000) / 60000), sec = Math.floor((ms % 60000) / 1000);
  return `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}${sep}${String(ms % 1000).padStart(3, "0")}`;
}
