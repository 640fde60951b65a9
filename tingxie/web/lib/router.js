// Hash routes: one <section class="page"> per page; a page object may have init, enter, leave, relabel.
import { t } from "../i18n.js";
import { $$ } from "./dom.js";

let current = null;

export function currentPage() {
  return current;
}

export function route(pages) {
  const name = (location.hash.replace(/^#\/?/, "").split("/")[0] || "recognise");
  const page = pages[name] ? name : "recognise";
  if (current && current !== page) pages[current].leave?.();
  $$(".page").forEach((s) => (s.hidden = s.id !== `page-${page}`));
  $$(".tabs a").forEach((a) => a.setAttribute("aria-current", a.dataset.page === page ? "page" : "false"));
  const changed = current !== page;
  current = page;
  document.title = `${t(`nav.${page}`)} · tingxie`;
  if (changed) pages[page].enter?.();
}
