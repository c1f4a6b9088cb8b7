// The documents page: the index's documents a page at a time, a filter, and delete.

import {
  api,
  byId,
  confirmAction,
  currentIndex,
  el,
  initIndexPicker,
  refreshIndexInfo,
  showNotice,
  sourceLink,
} from "./common.js";

const PAGE_SIZE = 50;
const view = { offset: 0, total: 0, query: "", shown: 0 };
const JOB_POLL_MS = 500;

async function load() {
  const params = new URLSearchParams({ offset: String(view.offset), limit: String(PAGE_SIZE) });
  const index = currentIndex();
  if (index) params.set("index", index);
  if (view.query) params.set("q", view.query);
  const table = byId("documents");
  table.setAttribute("aria-busy", "true");
  // A slower answer to an earlier request (the first page, before a filter) must not
  // replace a later one.
  const request = ++view.shown;
  let page;
  try {
    page = await api(`/v1/documents?${params}`);
  } catch (error) {
    if (request === view.shown) showNotice(`Could not list the documents: ${error.message}`);
    return;
  } finally {
    if (request === view.shown) table.removeAttribute("aria-busy");
  }
  if (request !== view.shown) return;
  const documents = page.data || [];
  view.total = typeof page.total === "number" ? page.total : documents.length;
  table.replaceChildren(...documents.map(row));
  const first = documents.length ? view.offset + 1 : 0;
  const last = view.offset + documents.length;
  byId("documents-summary").textContent = documents.length
    ? `Documents ${first}–${last} of ${view.total}${view.query ? ` matching “${view.query}”` : ""}`
    : view.query
      ? `No document matches “${view.query}”.`
      : "This index has no documents yet: add some on the Sources page.";
  byId("page-info").textContent = view.total
    ? `page ${Math.floor(view.offset / PAGE_SIZE) + 1} of ${Math.max(1, Math.ceil(view.total / PAGE_SIZE))}`
    : "";
  byId("previous").disabled = view.offset === 0;
  byId("next").disabled = last >= view.total;
}

function row(document_) {
  const title = document_.title || "(untitled)";
  return el(
    "tr",
    { attrs: { "data-document": document_.id } },
    el("td", { className: "doc-title", text: title }),
    el("td", {}, document_.url ? sourceLink(document_.url, document_.url) : el("span", { className: "muted", text: document_.id })),
    el("td", { className: "num", text: String(document_.chunks ?? "") }),
    el(
      "td",
      {},
      el("button", {
        className: "small danger",
        text: "Delete",
        attrs: { type: "button", "aria-label": `Delete ${title}` },
        on: { click: (event) => remove(document_, event.currentTarget) },
      }),
    ),
  );
}

async function remove(document_, button) {
  const name = document_.title || document_.url || document_.id;
  const sure = await confirmAction(
    `Delete “${name}” and its ${document_.chunks ?? ""} chunks from the index? Questions stop finding it at once.`,
  );
  if (!sure) return;
  button.disabled = true;
  const params = new URLSearchParams();
  const index = currentIndex();
  if (index) params.set("index", index);
  try {
    const answer = await api(`/v1/documents/${encodeURIComponent(document_.id)}?${params}`, {
      method: "DELETE",
    });
    if (answer && answer.object === "job") await finished(answer);
    showNotice(`Deleted “${name}”.`, "info");
  } catch (error) {
    showNotice(`Could not delete “${name}”: ${error.message}`);
    button.disabled = false;
    return;
  }
  refreshIndexInfo();
  if (view.offset && view.offset >= view.total - 1) view.offset = Math.max(0, view.offset - PAGE_SIZE);
  await load();
}

/** Waits for a delete queued behind other jobs (the server answered 202 with the job). */
async function finished(job) {
  let current = job;
  while (current.status !== "succeeded") {
    if (current.status === "failed") throw new Error(current.error || "the delete failed");
    await new Promise((resolve) => setTimeout(resolve, JOB_POLL_MS));
    current = await api(`/v1/jobs/${encodeURIComponent(job.id)}`);
  }
}

byId("filter-form").addEventListener("submit", (event) => {
  event.preventDefault();
  view.query = byId("filter").value.trim();
  view.offset = 0;
  load();
});
byId("previous").addEventListener("click", () => {
  view.offset = Math.max(0, view.offset - PAGE_SIZE);
  load();
});
byId("next").addEventListener("click", () => {
  view.offset += PAGE_SIZE;
  load();
});

initIndexPicker(() => {
  view.offset = 0;
  load();
}).then(load);
