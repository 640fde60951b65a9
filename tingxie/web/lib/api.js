// Talking to the server: fetch/XHR with the API key, the key prompt, errors users can read.
import { errorText, onLangChange } from "../i18n.js";
import { $, show } from "./dom.js";

const KEY_STORE = "tingxie.apiKey";

export function apiKey() {
  return localStorage.getItem(KEY_STORE) || "";
}

export function withKey(url) {
  const k = apiKey();
  if (!k) return url;
  return url + (url.includes("?") ? "&" : "?") + "api_key=" + encodeURIComponent(k);
}

let keyPrompt = null;
let keyError = null;
// What the server said (missing or invalid key), in the language shown now: the dialog
// has its own language switch.
const showKeyReason = () => {
  if (keyError) $("#key-reason").textContent = errorText(keyError.code, keyError.raw, keyError.status);
};
onLangChange(showKeyReason);

// `err`: the 401 ApiError that asks for a key.
export function askKey(err) {
  if (keyPrompt) return keyPrompt;
  const dlg = $("#key-dialog");
  keyError = err || null;
  $("#key-reason").textContent = "";
  showKeyReason();
  $("#key-input").value = "";
  keyPrompt = new Promise((resolve) => {
    const done = (ok) => {
      dlg.close();
      keyPrompt = null;
      $("#key-form").onsubmit = null;
      $("#key-cancel").onclick = null;
      if (ok) {
        localStorage.setItem(KEY_STORE, $("#key-input").value.trim());
        updateKeyButton();
      }
      resolve(ok);
    };
    $("#key-form").onsubmit = (e) => { e.preventDefault(); if ($("#key-input").value.trim()) done(true); };
    $("#key-cancel").onclick = () => done(false);
    dlg.oncancel = (e) => { e.preventDefault(); done(false); };
    dlg.showModal();
    $("#key-input").focus();
  });
  return keyPrompt;
}

export function updateKeyButton() {
  show($("#forget-key"), !!apiKey());
}

// `message` is what the user reads (translated from the server's stable `code`); `raw` is the server's own words.
export class ApiError extends Error {
  constructor(status, raw, code = null) {
    super(errorText(code, raw, status));
    this.status = status;
    this.raw = raw;
    this.code = code;
  }
}

function errorFromBody(status, body, fallback) {
  const e = body?.error;
  return new ApiError(status, e?.message || body?.detail || fallback, e?.code || null);
}

async function responseError(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not json */ }
  return errorFromBody(res.status, body, `${res.status} ${res.statusText}`);
}

export async function api(path, opts = {}) {
  for (;;) {
    const headers = new Headers(opts.headers || {});
    if (apiKey()) headers.set("Authorization", `Bearer ${apiKey()}`);
    let res;
    try {
      res = await fetch(path, { ...opts, headers });
    } catch (e) {
      throw new ApiError(0, e.message, "network");
    }
    if (res.status === 401) {
      const err = await responseError(res);
      if (await askKey(err)) continue;
      throw err;
    }
    if (!res.ok) throw await responseError(res);
    if (opts.raw) return res;
    const type = res.headers.get("content-type") || "";
    return type.includes("json") ? res.json() : res.text();
  }
}

// POST multipart with upload progress (fetch has none); retries after a 401 prompt.
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const send = () => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", path);
      if (apiKey()) xhr.setRequestHeader("Authorization", `Bearer ${apiKey()}`);
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress && onProgress(e.loaded / e.total);
      xhr.onerror = () => reject(new ApiError(0, "network error during upload", "network"));
      xhr.onload = async () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch { /* not json */ }
        if (xhr.status === 401) {
          const err = errorFromBody(401, body, "unauthorised");
          if (await askKey(err)) return send();
          return reject(err);
        }
        if (xhr.status >= 400) return reject(errorFromBody(xhr.status, body, `${xhr.status} ${xhr.statusText}`));
        resolve(body);
      };
      xhr.send(form);
    };
    send();
  });
}

export function forgetKey() {
  localStorage.removeItem(KEY_STORE);
  updateKeyButton();
}
