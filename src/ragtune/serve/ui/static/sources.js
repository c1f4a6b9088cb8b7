// The sources page: start ingests (URLs with crawl options, uploaded files) and syncs,
// follow a job's progress as it streams, show its report, list recent jobs.

import {
  api,
  byId,
  currentIndex,
  el,
  formatTime,
  initIndexPicker,
  refreshIndexInfo,
  showNotice,
  sourceLink,
  sseData,
} from "./common.js";

const FINISHED = new Set(["succeeded", "failed"]);
const POLL_MS = 1000;

let followed = null; // the id of the job the page is following

const lines = (text) =>
  text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);

// ---------------------------------------------------------------- starting jobs

function urlRequest() {
  const request = { urls: lines(byId("urls").value), crawl: byId("crawl").checked };
  const index = currentIndex();
  if (index) request.index = index;
  const maxPages = Number.parseInt(byId("max-pages").value, 10);
  const maxDepth = Number.parseInt(byId("max-depth").value, 10);
  if (Number.isFinite(maxPages)) request.max_pages = maxPages;
  if (Number.isFinite(maxDepth)) request.max_depth = maxDepth;
  if (byId("scope").value) request.scope = byId("scope").value;
  if (byId("render").value) request.render = byId("render").value;
  const include = lines(byId("include").value);
  const exclude = lines(byId("exclude").value);
  if (include.length) request.include = include;
  if (exclude.length) request.exclude = exclude;
  return request;
}

async function start(button, call) {
  button.disabled = true;
  showNotice("");
  try {
    const job = await call();
    follow(job);
    return true;
  } catch (error) {
    showNotice(error.message || String(error));
    return false;
  } finally {
    button.disabled = false;
  }
}

byId("url-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = event.submitter || event.target.querySelector("button[type=submit]");
  await start(button, () => api("/v1/ingest", { method: "POST", json: urlRequest() }));
});

byId("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = event.submitter || event.target.querySelector("button[type=submit]");
  const form = new FormData();
  for (const file of byId("files").files) form.append("files", file, file.name);
  const index = currentIndex();
  if (index) form.append("index", index);
  if (await start(button, () => api("/v1/ingest", { method: "POST", form }))) {
    byId("files").value = "";
  }
});

byId("sync").addEventListener("click", async (event) => {
  const index = currentIndex();
  await start(event.currentTarget, () =>
    api("/v1/sync", { method: "POST", json: index ? { index } : {} }),
  );
});

// ---------------------------------------------------------------- following a job

async function follow(job) {
  followed = job.id;
  renderJob(job);
  loadJobs();
  if (FINISHED.has(job.status)) return;
  let last = job;
  try {
    const response = await api(`/v1/jobs/${encodeURIComponent(job.id)}/events`, { raw: true });
    for await (const data of sseData(response)) {
      if (followed !== job.id) return;
      last = JSON.parse(data);
      renderJob(last);
    }
  } catch {
    // The stream broke (a proxy that buffers, a restart): ask instead, until it ends.
  }
  while (followed === job.id && !FINISHED.has(last.status)) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    try {
      last = await api(`/v1/jobs/${encodeURIComponent(job.id)}`);
      if (followed === job.id) renderJob(last);
    } catch (error) {
      showNotice(`Lost track of the job: ${error.message}`);
      return;
    }
  }
  loadJobs();
  refreshIndexInfo();
}

function renderJob(job) {
  const box = byId("job");
  box.hidden = false;
  box.dataset.status = job.status;
  box.dataset.job = job.id;
  byId("job-title").textContent = `${job.kind || "job"} ${job.id} · ${job.index || ""}`;
  const badge = byId("job-status");
  badge.textContent = job.status;
  badge.dataset.status = job.status;
  const progress = job.progress || {};
  byId("job-stage").textContent = progress.stage ? `stage: ${progress.stage}` : "";
  const bar = byId("job-progress");
  if (job.status === "succeeded") {
    bar.max = 1;
    bar.value = 1;
  } else if (typeof progress.total === "number" && progress.total > 0) {
    bar.max = progress.total;
    bar.value = Math.min(progress.done || 0, progress.total);
  } else if (FINISHED.has(job.status)) {
    bar.max = 1;
    bar.value = 0;
  } else {
    bar.removeAttribute("value"); // indeterminate: the total is not known yet
  }
  const hasTotal = typeof progress.total === "number" && progress.total > 0;
  const counts =
    hasTotal || progress.done > 0
      ? `${progress.done || 0}${hasTotal ? ` of ${progress.total}` : ""} · `
      : "";
  // A failed job's message is its error, shown below in full.
  const message = job.error ? "" : progress.message || "";
  byId("job-message").textContent = `${counts}${message}`.replace(/ · $/, "");
  renderReport(job);
  renderEvents(job.events || []);
}

function renderEvents(events) {
  byId("job-event-count").textContent = String(events.length);
  byId("job-events").replaceChildren(
    ...events.map((event) =>
      el(
        "li",
        { className: `event ${event.status || ""}` },
        el("span", { className: "badge", text: event.status || "" }),
        " ",
        sourceLink(event.url || "", event.url || ""),
        event.reason ? el("span", { className: "reason", text: ` — ${event.reason}` }) : null,
      ),
    ),
  );
}

/** A report as [label, text] pairs: nested counts flattened one level, lists by length. */
function reportFacts(report) {
  const facts = [];
  for (const [key, value] of Object.entries(report)) {
    const label = key.replaceAll("_", " ");
    if (Array.isArray(value)) continue; // lists (failures) are shown on their own
    if (value && typeof value === "object") {
      for (const [inner, count] of Object.entries(value)) {
        if (count === null || typeof count !== "object") {
          facts.push([`${label}: ${inner.replaceAll("_", " ")}`, String(count)]);
        }
      }
    } else if (value !== null && value !== undefined) {
      facts.push([label, String(value)]);
    }
  }
  // Documents and chunks first: they are what a person looks for.
  return facts.sort((a, b) => rank(a[0]) - rank(b[0]));
}

/** Failed pages, from the report's list of failures or from the job's events. */
function failures(job) {
  const report = job.report || {};
  for (const key of ["failed", "failures", "failed_pages"]) {
    if (Array.isArray(report[key])) return report[key];
  }
  return (job.events || []).filter((event) => event.status === "failed");
}

function renderReport(job) {
  const target = byId("job-report");
  const nodes = [];
  if (job.error) {
    nodes.push(el("p", { className: "error", attrs: { role: "alert" }, text: job.error }));
  }
  const report = job.report;
  if (report && typeof report === "object") {
    const facts = el("dl", { className: "facts" });
    for (const [label, text] of reportFacts(report)) {
      facts.append(el("div", {}, el("dt", { text: label }), el("dd", { text })));
    }
    nodes.push(el("h3", { text: "Report" }), facts);
  }
  const failed = FINISHED.has(job.status) ? failures(job) : [];
  if (failed.length) {
    nodes.push(
      el("h3", { text: `Failed (${failed.length})` }),
      el(
        "ul",
        { className: "failures" },
        ...failed.map((item) =>
          typeof item === "string"
            ? el("li", { text: item })
            : el(
                "li",
                {},
                sourceLink(item.url || item.path || "", item.url || item.path || ""),
                el("span", { className: "reason", text: item.reason ? ` — ${item.reason}` : "" }),
              ),
        ),
      ),
    );
  }
  target.replaceChildren(...nodes);
}

function rank(key) {
  const order = ["documents", "chunks"];
  const at = order.indexOf(key);
  return at === -1 ? order.length : at;
}

// ---------------------------------------------------------------- recent jobs

async function loadJobs() {
  let jobs = [];
  try {
    jobs = (await api("/v1/jobs")).data || [];
  } catch (error) {
    showNotice(`Could not list the jobs: ${error.message}`);
    return;
  }
  byId("jobs-empty").hidden = jobs.length > 0;
  byId("jobs").replaceChildren(
    ...jobs.map((job) =>
      el(
        "tr",
        { attrs: { "data-job": job.id } },
        el("td", { text: job.id }),
        el("td", { text: job.kind || "" }),
        el("td", { text: job.index || "" }),
        el("td", {}, el("span", { className: "badge", text: job.status, attrs: { "data-status": job.status } })),
        el("td", { text: formatTime(job.started || job.created) }),
        el(
          "td",
          {},
          el("button", {
            className: "small",
            text: "Show",
            attrs: { type: "button", "aria-label": `Show job ${job.id}` },
            on: { click: () => follow(job) },
          }),
        ),
      ),
    ),
  );
}

byId("jobs-refresh").addEventListener("click", loadJobs);

initIndexPicker();
loadJobs();
