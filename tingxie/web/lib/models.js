// The model selector of Recognise, Batch and Real-time. The server may serve several models
// (GET /api/models: family, languages, capabilities); the page offers only what the chosen
// one can do: its languages, and the controls marked data-needs="<capability>".
import { t, lang, onLangChange } from "../i18n.js";
import { $, $$, el, show } from "./dom.js";
import { api } from "./api.js";
import { langOptions, languagesOf } from "./options.js";

const STORE = "tingxie.model."; // + page name: each page remembers its own choice

// How to add a stronger model (docs/models.md, "Adding a better model"): names, folders
// and commands stay as they are, in <code>, inside the translated sentences.
const GUIDE_CODE = {
  base: "whisper-base",
  sv: "sherpa-onnx-sense-voice-zh-en-ja-ko-yue-2024-07-17",
  extras: "EXTRAS='[sherpa]' bash scripts/install.sh",
  fw: "faster-whisper-large-v3",
  dir: "$TINGXIE_HOME/models/",
  default: "~/.cache/tingxie/models/",
  doc: "docs/models.md",
};

function withCode(key) {
  return t(key).split(/\{(\w+)\}/).map((part, i) => (i % 2 ? el("code", { text: GUIDE_CODE[part] ?? part }) : part));
}

// The guide's body; `installed`: the model ids the server lists now.
export function modelGuide(installed) {
  return el("div", { class: "guide" },
    el("p", {}, ...withCode("guide.intro"), " ", ...installed.flatMap((id, i) => [i ? ", " : "", el("code", { class: "installed", text: id })])),
    el("ol", {}, ...["guide.step1", "guide.step2", "guide.step3"].map((k) => el("li", {}, ...withCode(k)))),
    el("p", { class: "muted small" }, ...withCode("guide.more")));
}
const INFO_CAPS = ["translation", "word_timestamps", "hotwords", "streaming", "tags"];

function label(m) {
  const notes = [];
  if (m.default) notes.push(t("opt.model.default"));
  if (m.ready === false) notes.push(t("opt.model.unavailable"));
  else if (!m.loaded) notes.push(t("sys.model.notloaded"));
  if (!notes.length) return m.id;
  return lang() === "zh" ? `${m.id}（${notes.join("，")}）` : `${m.id} (${notes.join(", ")})`;
}

// `root` holds a select.model-select, a .lang-select, optionally a .model-info line and
// controls marked data-needs; `page` names where the choice is remembered.
export function modelSelector(root, page) {
  const select = $(".model-select", root);
  const langSelect = $(".lang-select", root);
  const info = $(".model-info", root);
  let models = [];
  // the selector's help: which models are installed and how to add one
  const help = el("details", { class: "model-help" });
  select.closest("label")?.after(help);

  const chosen = () => models.find((m) => m.id === select.value);

  const fill = () => {
    const keep = select.value || localStorage.getItem(STORE + page);
    if (!models.length) {
      // the list is unknown: the server's default runs, and every option stays offered
      select.replaceChildren(el("option", { value: "", text: t("opt.model.server") }));
      return;
    }
    select.replaceChildren(...models.map((m) => el("option", { value: m.id, text: label(m), disabled: m.ready === false })));
    const usable = models.filter((m) => m.ready !== false);
    select.value = (usable.find((m) => m.id === keep) || usable.find((m) => m.default) || usable[0] || models[0]).id;
  };

  const apply = () => {
    const m = chosen();
    langSelect.langs = languagesOf(m);
    langOptions(langSelect);
    for (const node of $$("[data-needs]", root)) {
      const ok = !m || !!m.capabilities?.[node.dataset.needs];
      show(node, ok);
      $$("input, select, textarea", node).forEach((c) => (c.disabled = !ok));
    }
    if (help) help.replaceChildren(el("summary", { text: t("guide.help") }), modelGuide(models.map((x) => x.id)));
    if (info) {
      const caps = INFO_CAPS.filter((c) => m?.capabilities?.[c]).map((c) => t(`cap.${c}`));
      info.textContent = m ? [m.family, ...caps].filter(Boolean).join(" · ") : "";
    }
  };

  select.addEventListener("change", () => {
    if (select.value) localStorage.setItem(STORE + page, select.value);
    apply();
  });
  onLangChange(() => { fill(); apply(); });
  fill(); // "Server default" until the list comes
  apply();

  // Called when the page is opened: "not loaded" changes once a model has run.
  return async function refresh() {
    try {
      models = (await api("/api/models")).models;
    } catch {
      models = [];
    }
    fill();
    apply();
    root.dataset.models = "loaded"; // the server's list is in (tests wait for it)
  };
}
