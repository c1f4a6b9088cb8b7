// The chat page: streams an answer from /v1/chat/completions, shows its [n] markers as
// citation chips, and opens the cited passage with the sentences' evidence marked.

import {
  api,
  byId,
  chatOptions,
  currentIndex,
  el,
  initIndexPicker,
  sourceLink,
  sseData,
} from "./common.js";

// "[1]" or "[1, 2]": the form the server writes every citation in (query/citations.py).
const MARKER = /\[(\d{1,6}(?:\s*,\s*\d{1,6})*)\]/g;

const chat = {
  messages: [], // the conversation so far, sent with each question so follow-ups work
  controller: null, // aborts the answer being streamed
  openChip: null, // the chip whose source the panel shows, to return focus to
};

const log = byId("log");
const question = byId("question");
const sendButton = byId("send");
const stopButton = byId("stop");

function setStreaming(streaming) {
  sendButton.disabled = streaming;
  stopButton.disabled = !streaming;
  log.setAttribute("aria-busy", streaming ? "true" : "false");
}

// ---------------------------------------------------------------- one exchange

function addTurn(text) {
  byId("empty-hint").hidden = true;
  log.append(el("li", { className: "turn user" }, el("div", { className: "bubble", text })));
  const answer = el("div", { className: "answer" });
  const status = el("p", { className: "turn-status muted", text: "Searching the sources…" });
  const bubble = el("div", { className: "bubble" }, status, answer);
  const item = el("li", { className: "turn assistant", attrs: { "aria-busy": "true" } }, bubble);
  log.append(item);
  item.scrollIntoView({ block: "end" });
  return { item, bubble, status, answer, sources: [], grounding: [] };
}

/** The answer's text, with each [n] marker turned into chips that open source n. */
function renderAnswer(turn, text) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(MARKER)) {
    nodes.push(document.createTextNode(text.slice(last, match.index)));
    const chips = el("span", { className: "cites" });
    for (const part of match[1].split(",")) {
      chips.append(citationChip(turn, Number.parseInt(part.trim(), 10)));
    }
    nodes.push(chips);
    last = match.index + match[0].length;
  }
  nodes.push(document.createTextNode(text.slice(last)));
  turn.answer.replaceChildren(...nodes);
}

function sourceNumbered(turn, number) {
  return turn.sources.find((source) => source.number === number) || turn.sources[number - 1];
}

function citationChip(turn, number) {
  const source = sourceNumbered(turn, number);
  const title = source ? source.title || source.url || `Source ${number}` : `Source ${number}`;
  return el("button", {
    className: "cite",
    text: String(number),
    attrs: {
      type: "button",
      "aria-label": `Source ${number}: ${title}`,
      title,
      "data-source": number,
    },
    on: { click: (event) => openSource(turn, number, event.currentTarget) },
  });
}

/** Below a finished answer: every passage it was given, the cited ones first. */
function renderSourceList(turn, cited) {
  if (!turn.sources.length) return;
  const citedSet = new Set(cited);
  const ordered = [...turn.sources].sort(
    (a, b) => Number(citedSet.has(b.number)) - Number(citedSet.has(a.number)) || a.number - b.number,
  );
  const list = el("ol", { className: "source-list" });
  for (const source of ordered) {
    list.append(
      el(
        "li",
        { className: citedSet.has(source.number) ? "cited" : "" },
        citationChip(turn, source.number),
        " ",
        el("span", { className: "source-title", text: source.title || source.url || "untitled" }),
      ),
    );
  }
  const label = turn.notInSources ? "Closest passages" : "Sources";
  turn.bubble.append(el("details", { className: "sources" }, el("summary", { text: label }), list));
}

function showNotInSources(turn, reason) {
  turn.notInSources = true;
  turn.item.classList.add("not-in-sources");
  const banner = el(
    "div",
    { className: "nis-banner", attrs: { role: "note" } },
    el("strong", { text: "Not in the sources." }),
    " ",
    el("span", { className: "nis-reason", text: reason || "The indexed documents do not answer this." }),
  );
  turn.bubble.insertBefore(banner, turn.answer);
}

function finishTurn(turn, final) {
  turn.item.removeAttribute("aria-busy");
  turn.status.remove();
  if (!final) return;
  if (Array.isArray(final.sources)) turn.sources = final.sources;
  turn.grounding = Array.isArray(final.grounding) ? final.grounding : [];
  if (final.not_in_sources) showNotInSources(turn, final.reason);
  const choice = (final.choices && final.choices[0]) || {};
  if (choice.finish_reason === "length") {
    turn.bubble.append(el("p", { className: "muted", text: "The answer was cut at its length limit." }));
  }
  renderSourceList(turn, Array.isArray(final.citations) ? final.citations : []);
}

function failTurn(turn, message) {
  turn.item.removeAttribute("aria-busy");
  turn.status.remove();
  turn.item.classList.add("failed");
  turn.bubble.append(el("p", { className: "error", attrs: { role: "alert" }, text: message }));
}

async function ask(text) {
  const turn = addTurn(text);
  chat.messages.push({ role: "user", content: text });
  const request = { model: currentIndex() || undefined, messages: [...chat.messages], stream: true };
  const options = chatOptions();
  if (options) request.ragtune = options;

  chat.controller = new AbortController();
  setStreaming(true);
  let answer = "";
  let final = null;
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST",
      json: request,
      signal: chat.controller.signal,
      raw: true,
    });
    for await (const data of sseData(response)) {
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message || "the answer failed");
      if (Array.isArray(chunk.sources)) {
        turn.sources = chunk.sources;
        if (!answer) {
          const count = chunk.sources.length;
          turn.status.textContent = `Read ${count} passage${count === 1 ? "" : "s"}; answering…`;
        }
      }
      const choice = (chunk.choices && chunk.choices[0]) || {};
      const piece = choice.delta && choice.delta.content;
      if (piece) {
        answer += piece;
        turn.status.textContent = "Answering…";
        renderAnswer(turn, answer);
      }
      if (choice.finish_reason) final = chunk;
    }
    renderAnswer(turn, answer);
    finishTurn(turn, final);
  } catch (error) {
    if (error.name === "AbortError") {
      finishTurn(turn, null);
      turn.bubble.append(el("p", { className: "muted stopped", text: "Stopped." }));
    } else {
      failTurn(turn, error.message || String(error));
    }
  } finally {
    chat.controller = null;
    setStreaming(false);
  }
  if (answer) chat.messages.push({ role: "assistant", content: answer });
  else chat.messages.pop(); // nothing came back: the question is not part of the history
}

// ---------------------------------------------------------------- the source panel

/** Python counts offsets in code points, JavaScript strings in UTF-16 units. */
function codePointSlices(text, ranges) {
  const points = Array.from(text);
  const pieces = [];
  let at = 0;
  for (const [start, end] of ranges) {
    if (start > at) pieces.push([points.slice(at, start).join(""), false]);
    pieces.push([points.slice(start, end).join(""), true]);
    at = end;
  }
  if (at < points.length) pieces.push([points.slice(at).join(""), false]);
  return pieces;
}

/** The evidence spans in source `number`'s text, clamped, sorted and merged. */
function evidenceRanges(turn, number, length) {
  const ranges = [];
  for (const sentence of turn.grounding) {
    for (const evidence of sentence.evidence || []) {
      if (evidence.number !== number) continue;
      const start = Math.max(0, Math.min(length, Number(evidence.start) || 0));
      const end = Math.max(start, Math.min(length, Number(evidence.end) || 0));
      if (end > start) ranges.push([start, end]);
    }
  }
  ranges.sort((a, b) => a[0] - b[0]);
  const merged = [];
  for (const range of ranges) {
    const previous = merged[merged.length - 1];
    if (previous && range[0] <= previous[1]) previous[1] = Math.max(previous[1], range[1]);
    else merged.push(range);
  }
  return merged;
}

function openSource(turn, number, chip) {
  const panel = byId("source-panel");
  const source = sourceNumbered(turn, number);
  byId("source-title").textContent = source
    ? `[${number}] ${source.title || source.url || "Untitled"}`
    : `[${number}]`;
  const link = byId("source-link");
  const passage = byId("source-text");
  const note = byId("source-note");
  if (!source) {
    link.replaceChildren();
    byId("source-score").textContent = "";
    passage.replaceChildren();
    note.textContent = "This source is not among the passages the answer was given.";
  } else {
    link.replaceChildren(source.url ? sourceLink(source.url, source.url) : "");
    byId("source-score").textContent =
      typeof source.score === "number" ? `relevance ${source.score.toFixed(3)}` : "";
    const text = typeof source.text === "string" ? source.text : "";
    const length = Array.from(text).length;
    let ranges = evidenceRanges(turn, number, length);
    note.textContent = ranges.length
      ? "The highlighted part supports the answer."
      : "No single sentence was matched: the whole passage is the source.";
    if (!ranges.length && length) ranges = [[0, length]];
    passage.replaceChildren(
      ...codePointSlices(text, ranges).map(([piece, marked]) =>
        marked ? el("mark", { text: piece }) : document.createTextNode(piece),
      ),
    );
  }
  panel.hidden = false;
  chat.openChip = chip;
  panel.focus();
  const firstMark = passage.querySelector("mark");
  if (firstMark) firstMark.scrollIntoView({ block: "nearest" });
}

function closeSource() {
  byId("source-panel").hidden = true;
  if (chat.openChip && chat.openChip.isConnected) chat.openChip.focus();
  chat.openChip = null;
}

// ---------------------------------------------------------------- wiring

byId("ask-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = question.value.trim();
  if (!text || chat.controller) return;
  question.value = "";
  ask(text);
});
question.addEventListener("keydown", (event) => {
  // Enter sends, Shift+Enter starts a new line (as in most chat apps).
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    byId("ask-form").requestSubmit();
  }
});
stopButton.addEventListener("click", () => chat.controller && chat.controller.abort());
byId("new-chat").addEventListener("click", () => {
  if (chat.controller) chat.controller.abort();
  chat.messages = [];
  log.replaceChildren();
  closeSource();
  byId("empty-hint").hidden = false;
  question.focus();
});
byId("source-close").addEventListener("click", closeSource);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !byId("source-panel").hidden) closeSource();
});

initIndexPicker(() => byId("new-chat").click());
