// The settings page: retrieval and answer options kept in localStorage (sent with each
// question as the request's `ragtune` object), and the API key in sessionStorage.

import {
  apiKey,
  byId,
  initIndexPicker,
  loadSettings,
  parseFilters,
  saveSettings,
  setApiKey,
} from "./common.js";

const fields = { top_k: "top-k", mode: "mode", answer_mode: "answer-mode", filters: "filters" };

function show() {
  const settings = loadSettings();
  for (const [name, id] of Object.entries(fields)) byId(id).value = settings[name] ?? "";
  byId("api-key-state").textContent = apiKey() ? "A key is set for this tab." : "No key set.";
}

byId("settings-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const problem = byId("filters-error");
  try {
    parseFilters(byId("filters").value);
  } catch (error) {
    problem.textContent = `Filters: ${error.message}`;
    problem.hidden = false;
    byId("filters").focus();
    return;
  }
  problem.hidden = true;
  const settings = {};
  for (const [name, id] of Object.entries(fields)) {
    const value = byId(id).value.trim();
    if (value) settings[name] = value;
  }
  saveSettings(settings);
  byId("settings-saved").textContent = "Saved.";
});

byId("api-key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setApiKey(byId("api-key").value.trim());
  byId("api-key").value = "";
  show();
});
byId("api-key-clear").addEventListener("click", () => {
  setApiKey("");
  show();
});

show();
initIndexPicker();
