// What every page shares: calling the API (with the key, when the server asks for
// one), reading Server-Sent Events from a fetch response, the index picker, the
// settings kept in this browser, and building DOM nodes.
//
// Everything an index or a server sends (titles, passages, URLs, answers, error
// messages) is hostile: it is only ever inserted as text (textContent, text nodes),
// never as markup, and linked only when it is an http(s) URL.

const SETTINGS_KEY = "ragtune.settings";
const INDEX_KEY = "ragtune.index";
const API_KEY = "ragtune.apiKey";

export const byId = (id) => document.getElementById(id);

/** A new element: `props` sets className, text, attributes (attrs) and listeners (on). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  if (props.className) node.className = props.className;
  if (props.text !== undefined && props.text !== null) node.textContent = String(props.text);
  for (const [name, value] of Object.entries(props.attrs || {})) {
    if (value !== undefined && value !== null && value !== false) {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const [event, handler] of Object.entries(props.on || {})) {
    node.addEventListener(event, handler);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** `url` when it is an absolute http(s) URL, else null: never a javascript: link. */
export function safeHref(url) {
  if (typeof url !== "string" || !url) return null;
  try {
    const parsed = new URL(url);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

/** A link to `url` opening in a new tab, or plain text when it is not http(s). */
export function sourceLink(url, label) {
  const text = label || url || "";
  const href = safeHref(url);
  if (!href) return el("span", { className: "source-url", text });
  return el("a", {
    className: "source-url",
    text,
    attrs: { href, target: "_blank", rel: "noopener noreferrer nofollow" },
  });
}

export function formatTime(seconds) {
  if (typeof seconds !== "number") return "";
  return new Date(seconds * 1000).toLocaleString();
}

// ---------------------------------------------------------------- settings

export function loadSettings() {
  try {
    const value = JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}");
    return value && typeof value === "object" ? value : {};
  } catch {
    return {};
  }
}

export function saveSettings(settings) {
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
}

// A filter as the CLI writes it: key=value, key!=value, key>=value (also >, <, <=),
// key^=prefix, key=a|b (retrieval's own parser checks the rest).
const FILTER = /^[^\s=!<>^][^=!<>^]*(?:!=|>=|<=|\^=|=|>|<)/;

/** Filter expressions, one a line; throws an Error naming the first bad line. */
export function parseFilters(text) {
  const filters = [];
  for (const [number, raw] of (text || "").split("\n").entries()) {
    const line = raw.trim();
    if (!line) continue;
    if (!FILTER.test(line)) {
      throw new Error(`line ${number + 1}: write a filter as key=value (or !=, >=, <=, >, <, ^=)`);
    }
    filters.push(line);
  }
  return filters;
}

/** The chat request's `ragtune` extension object from the saved settings (or null). */
export function chatOptions(settings = loadSettings()) {
  const options = {};
  const topK = Number.parseInt(settings.top_k, 10);
  if (Number.isFinite(topK) && topK > 0) options.top_k = topK;
  if (settings.mode) options.mode = settings.mode;
  if (settings.answer_mode) options.answer_mode = settings.answer_mode;
  try {
    const filters = parseFilters(settings.filters);
    if (filters.length) options.filters = filters;
  } catch {
    // The settings page refuses to save bad filters; an old bad value is ignored.
  }
  return Object.keys(options).length ? options : null;
}

export function apiKey() {
  return sessionStorage.getItem(API_KEY) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(API_KEY, key);
  else sessionStorage.removeItem(API_KEY);
}

// ---------------------------------------------------------------- notices and dialogs

export function showNotice(message, kind = "error") {
  const notice = byId("notice");
  if (!notice) return;
  notice.textContent = message;
  notice.dataset.kind = kind;
  notice.hidden = !message;
}

function dialogAnswer(dialog) {
  return new Promise((resolve) => {
    dialog.returnValue = "";
    dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true });
    dialog.showModal();
  });
}

/** Asks for the API key (the server answered 401); resolves to the key or "". */
let keyPrompt = null;
export function askForKey(message) {
  // Several calls that fail at once share one prompt.
  if (keyPrompt) return keyPrompt;
  const dialog = byId("key-dialog");
  const input = byId("key-input");
  input.value = "";
  const text = dialog.querySelector("p");
  text.textContent = message || "This server asks for an API key. It is kept for this browser tab only.";
  keyPrompt = dialogAnswer(dialog).then((answer) => {
    keyPrompt = null;
    const key = answer === "save" ? input.value.trim() : "";
    if (key) setApiKey(key);
    return key;
  });
  return keyPrompt;
}

/** Asks to confirm a deletion; resolves true or false. */
export async function confirmAction(question, action = "Delete") {
  const dialog = byId("confirm-dialog");
  byId("confirm-text").textContent = question;
  byId("confirm-ok").textContent = action;
  return (await dialogAnswer(dialog)) === "ok";
}

// ---------------------------------------------------------------- the API

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`.trim();
  let code = null;
  try {
    const body = await response.json();
    if (body && body.error && typeof body.error.message === "string") {
      message = body.error.message;
      code = body.error.code || null;
    }
  } catch {
    // Not JSON: keep the status line.
  }
  if (response.status === 429) {
    const wait = response.headers.get("Retry-After");
    if (wait) message += ` (try again in ${wait} s)`;
  }
  return new ApiError(response.status, message, code);
}

/**
 * Calls the API: `json` is sent as a JSON body, `form` as multipart; `raw` returns
 * the Response (for streams) instead of its JSON. A 401 asks for the key and tries
 * again with it; any other failure throws an ApiError with the server's message.
 */
export async function api(path, { method = "GET", json, form, signal, raw = false } = {}) {
  for (;;) {
    const headers = { Accept: raw ? "text/event-stream" : "application/json" };
    const key = apiKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = form;
    }
    const response = await fetch(path, { method, headers, body, signal, cache: "no-store" });
    if (response.status === 401) {
      const error = await errorOf(response);
      const fresh = await askForKey(key ? "That key was refused; enter another." : "");
      if (fresh) continue;
      throw error;
    }
    if (!response.ok) throw await errorOf(response);
    return raw ? response : response.json();
  }
}

/**
 * The `data` of each Server-Sent Event of a fetch response, as strings (EventSource
 * cannot POST nor send a key). Stops at the end of the stream or at "[DONE]".
 */
export async function* sseData(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
      const lines = buffer.split(/\r\n|\r|\n/);
      // The last piece may be an unfinished line, unless the stream ended.
      buffer = done ? "" : lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (data.length) {
            const event = data.join("\n");
            data = [];
            if (event === "[DONE]") return;
            yield event;
          }
        } else if (line.startsWith("data:")) {
          data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
        }
        // Comments (":") and other fields (event:, id:, retry:) are not used here.
      }
      if (done) {
        if (data.length && data.join("\n") !== "[DONE]") yield data.join("\n");
        return;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

// ---------------------------------------------------------------- the index picker

export function currentIndex() {
  const select = byId("index-select");
  return (select && select.value) || localStorage.getItem(INDEX_KEY) || "";
}

/** Fills the index picker from /v1/models; `onChange` runs when the user picks another. */
let describeIndex = () => {};

/** Shows the picked index's size again (after an ingest or a delete changed it). */
export async function refreshIndexInfo() {
  try {
    const models = (await api("/v1/models")).data || [];
    describeIndex(models);
  } catch {
    // The size is a courtesy; the page's own call reports failures.
  }
}

export async function initIndexPicker(onChange) {
  const select = byId("index-select");
  const info = byId("index-info");
  let models = [];
  try {
    models = (await api("/v1/models")).data || [];
  } catch (error) {
    showNotice(`Could not list the indexes: ${error.message}`);
    return [];
  }
  const remembered = localStorage.getItem(INDEX_KEY);
  select.replaceChildren(
    ...models.map((model) => el("option", { text: model.id, attrs: { value: model.id } })),
  );
  if (models.some((model) => model.id === remembered)) select.value = remembered;
  const describe = (fresh) => {
    if (fresh) models = fresh;
    const model = models.find((m) => m.id === select.value);
    const details = (model && model.ragtune) || {};
    info.textContent =
      typeof details.documents === "number"
        ? `${details.documents} documents, ${details.chunks} chunks`
        : "";
  };
  describe(null);
  describeIndex = describe;
  select.addEventListener("change", () => {
    localStorage.setItem(INDEX_KEY, select.value);
    describe(null);
    if (onChange) onChange(select.value);
  });
  return models;
}
