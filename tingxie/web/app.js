// tingxie web UI: a no-build single-page app. Hash routes, one section and one module per page.
import { t, lang, setLang, onLangChange, applyStatic } from "./i18n.js";
import { $, $$ } from "./lib/dom.js";
import { updateKeyButton, forgetKey } from "./lib/api.js";
import { langOptions, scriptOptions, channelOptions } from "./lib/options.js";
import { renderVadNotes } from "./lib/vad-settings.js";
import { currentPage, route } from "./lib/router.js";
import recognise from "./pages/recognise.js";
import realtime from "./pages/realtime.js";
import batch from "./pages/batch.js";
import history from "./pages/history.js";
import vad from "./pages/vad.js";
import system from "./pages/system.js";

const pages = { recognise, realtime, batch, history, vad, system };

function boot() {
  applyStatic(document);
  $$(".lang-select").forEach((s) => langOptions(s));
  $$(".script-select").forEach(scriptOptions);
  $$(".channels-select").forEach(channelOptions);
  $("#lang-switch").addEventListener("click", () => setLang(lang() === "zh" ? "en" : "zh"));
  $("#key-lang").addEventListener("click", () => setLang(lang() === "zh" ? "en" : "zh"));
  $("#forget-key").addEventListener("click", forgetKey);
  onLangChange(() => {
    $$(".lang-select").forEach((s) => langOptions(s));
    $$(".script-select").forEach(scriptOptions);
    $$(".channels-select").forEach(channelOptions);
    document.title = `${t(`nav.${currentPage()}`)} · tingxie`;
    renderVadNotes();
    for (const p of Object.values(pages)) p.relabel?.();
  });
  updateKeyButton();
  for (const p of Object.values(pages)) p.init?.();
  window.addEventListener("hashchange", () => {
    const name = location.hash.replace(/^#\/?/, "").split("/")[0];
    if (name === currentPage()) { pages[name].enter?.(); return; }
    route(pages);
  });
  route(pages);
  document.body.classList.add("ready");
}

boot();
