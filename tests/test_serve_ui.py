"""The web UI of ``ragtune serve`` in a real browser: Playwright driving the system's Chromium.

One server over a copy of the demo shop's index (plus one hostile document) answers
every test; each test opens a fresh browser context and drives a page as a person
would: a question streamed and its citation opened, the "not in the sources" state,
an upload and a URL ingest watched to their reports, a document deleted, settings
sent with a question, the key prompt. Screenshots of each state are saved to
``test-artifacts/serve-ui/`` (or ``$RAGTUNE_TEST_ARTIFACTS``) for a person to look at.

Sources are hostile: the hostile document's title, text and URL carry markup and a
``javascript:`` URL, and the test checks they are shown as text, never run.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers import needs_chromium
from tests.serve_server import running_server

from ragtune import Document, VectorStoreIndex
from ragtune.serve.auth import hash_key
from ragtune.serve.config import IndexSpec, ServeConfig
from ragtune.web.render import chromium_args, chromium_path

pytest.importorskip("playwright.sync_api", reason="the render extra (playwright) is not installed")
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ANSWER_SECONDS = 60_000  # ms: a first question loads the embedder on a busy 2-core machine
JOB_SECONDS = 90_000
HOSTILE_TITLE = "<img src=x onerror=alert('title')>Moonstone kazoo"
HOSTILE_TEXT = (
    "# Moonstone kazoo\n\n"
    "The moonstone kazoo <script>alert('text')</script> hums lullabies in C minor. "
    "The moonstone kazoo costs 13 dollars <img src=x onerror=alert('passage')>."
)
HOSTILE_URL = "javascript:alert('url')"
PAGES = ("/", "/sources", "/documents", "/settings")
# Every status the sources page shows for its job, in order (run by the test harness,
# not by the page: the page's policy allows no inline script).
RECORD_JOB_STATES = """
window.jobStates = [];
new MutationObserver(() => {
  const job = document.getElementById("job");
  const status = job && job.dataset.status;
  if (status && window.jobStates[window.jobStates.length - 1] !== status) {
    window.jobStates.push(status);
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-status"] });
"""


def artifacts() -> Path:
    directory = Path(os.environ.get("RAGTUNE_TEST_ARTIFACTS") or REPO / "test-artifacts")
    directory = directory / "serve-ui"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def screenshot(page: Page, name: str) -> None:
    page.screenshot(path=str(artifacts() / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def ui_index(shop_index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shop's index, copied (the tests write to it), with the hostile document added."""
    directory = tmp_path_factory.mktemp("serve-ui") / "shop"
    shutil.copytree(shop_index_dir, directory)
    hostile = Document(text=HOSTILE_TEXT, metadata={"url": HOSTILE_URL, "title": HOSTILE_TITLE})
    VectorStoreIndex.from_documents([hostile], persist_dir=directory)
    return directory


def serve_config(index: Path, data_dir: Path, **options: Any) -> ServeConfig:
    # The shop is served on loopback, so URL ingestion must be allowed to reach it;
    # the UI makes many small calls, more than a person's rate limit.
    return ServeConfig(
        [IndexSpec("shop", index)],
        allow_private_urls=True,
        data_dir=data_dir,
        rate_limit_per_minute=100_000,
        answer_mode="extract",
        **options,
    )


@pytest.fixture(scope="module")
def server(ui_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = serve_config(ui_index, tmp_path_factory.mktemp("serve-ui-data"))
    with running_server(config) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=chromium_path(), args=chromium_args())
        yield launched
        launched.close()


class Watched:
    """A page, and what went wrong on it: script errors and any dialog (alert, confirm)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.chat_requests: list[dict[str, Any]] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)
        page.on("request", self._request)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _console(self, message: Any) -> None:
        # A refused inline script or resource shows up here as a CSP violation.
        if message.type == "error":
            self.errors.append(message.text)

    def _request(self, request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/v1/chat/completions"):
            self.chat_requests.append(json.loads(request.post_data or "{}"))


@pytest.fixture()
def watched(browser: Browser, server: str) -> Iterator[Watched]:
    context = browser.new_context(base_url=server, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(ANSWER_SECONDS)
    watched = Watched(context.new_page())
    yield watched
    context.close()
    assert watched.dialogs == [], "a dialog fired: a source's text ran as script"
    assert watched.errors == []


def ask(page: Page, question: str) -> Any:
    """Ask on the chat page; returns the finished answer's list item."""
    before = page.locator(".turn.assistant").count()
    page.fill("#question", question)
    page.click("#send")
    turn = page.locator(".turn.assistant").nth(before)
    expect(turn).to_be_visible()
    expect(turn).not_to_have_attribute("aria-busy", "true", timeout=ANSWER_SECONDS)
    expect(page.locator("#send")).to_be_enabled()
    return turn


# ---------------------------------------------------------------- without a browser


def test_pages_are_served_with_a_strict_policy(server: str) -> None:
    for path in PAGES:
        response = httpx.get(server + path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        # Every script is a file of the UI's own (no inline script, no other origin).
        scripts = re.findall(r"<script\b([^>]*)>", response.text)
        assert scripts and all(re.search(r'src="/static/[\w.-]+\.js"', s) for s in scripts)
        assert not re.search(r"(?:src|href)=\"(?:https?:)?//", response.text)
    script = httpx.get(server + "/static/chat.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text
    for missing in ("/static/nothing.js", "/static/..%2Fui.py", "/static/%2e%2e%2fapp.py"):
        refused = httpx.get(server + missing)
        assert refused.status_code == 404
        assert set(refused.json()) == {"error"}


def test_no_script_inserts_markup() -> None:
    """The UI's scripts build the DOM from text only (the browser tests show it holds)."""
    static = REPO / "src/ragtune/serve/ui/static"
    for script in static.glob("*.js"):
        source = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in source, f"{script.name} uses {sink}"


# ---------------------------------------------------------------- chat


@needs_chromium
def test_chat_streams_a_cited_answer_and_opens_its_source(watched: Watched) -> None:
    page = watched.page
    page.goto("/")
    expect(page.locator("#index-select")).to_have_value("shop")
    turn = ask(page, "What is the flavor of the dark energy potion?")
    [request] = watched.chat_requests
    assert request["stream"] is True and request["model"] == "shop"
    answer = turn.locator(".answer")
    expect(answer).to_contain_text("cherry cola")
    chip = answer.locator("button.cite").first
    expect(chip).to_be_visible()
    screenshot(page, "chat-answer")

    chip.click()
    panel = page.locator("#source-panel")
    expect(panel).to_be_visible()
    expect(panel.locator("#source-title")).to_contain_text("Dark Energy Potion")
    # The supporting sentence is highlighted inside the passage.
    expect(panel.locator("#source-text mark").first).to_contain_text("cherry cola")
    link = panel.locator("#source-link a")
    expect(link).to_have_attribute("href", re.compile(r"^http://127\.0\.0\.1:\d+/products/"))
    expect(link).to_have_attribute("rel", re.compile("noopener"))
    screenshot(page, "chat-citation")

    # A follow-up carries the conversation, so "it" can be resolved.
    ask(page, "How much caffeine does it contain?")
    follow_up = watched.chat_requests[-1]["messages"]
    assert [m["role"] for m in follow_up] == ["user", "assistant", "user"]
    assert "cherry cola" in follow_up[1]["content"]
    page.emulate_media(color_scheme="dark")
    screenshot(page, "chat-dark")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()


@needs_chromium
def test_a_question_outside_the_sources_is_shown_as_such(watched: Watched) -> None:
    page = watched.page
    page.goto("/")
    turn = ask(page, "Who won the football world cup in 1998?")
    expect(turn).to_have_class(re.compile(r"\bnot-in-sources\b"))
    banner = turn.locator(".nis-banner")
    expect(banner).to_contain_text("Not in the sources.")
    assert banner.locator(".nis-reason").inner_text().strip()
    screenshot(page, "chat-not-in-sources")


@needs_chromium
def test_hostile_sources_are_shown_as_text(watched: Watched) -> None:
    page = watched.page
    page.goto("/")
    turn = ask(page, "How much does the moonstone kazoo cost?")
    expect(turn.locator(".answer button.cite").first).to_be_visible()
    turn.locator(".sources summary").click()
    # Open the chip of the hostile source (its label is the title, as text).
    hostile = turn.locator(".sources li", has_text="Moonstone kazoo").locator("button.cite")
    hostile.click()
    panel = page.locator("#source-panel")
    expect(panel.locator("#source-title")).to_contain_text("<img src=x onerror=alert('title')>")
    expect(panel.locator("#source-text")).to_contain_text("<script>alert('text')</script>")
    # The javascript: URL is text, never a link.
    expect(panel.locator("#source-link")).to_contain_text("javascript:alert('url')")
    assert panel.locator("#source-link a").count() == 0
    assert page.locator("a[href^='javascript:' i]").count() == 0
    assert page.locator("main img, main script").count() == 0
    screenshot(page, "chat-hostile-source")

    page.goto("/documents")
    page.fill("#filter", "moonstone")
    page.click("#filter-form button")
    row = page.locator("#documents tr")
    expect(row).to_have_count(1)
    expect(row.locator(".doc-title")).to_have_text(HOSTILE_TITLE)
    assert page.locator("main img, a[href^='javascript:' i]").count() == 0


@needs_chromium
def test_settings_are_sent_with_each_question(watched: Watched) -> None:
    page = watched.page
    page.goto("/settings")
    page.fill("#top-k", "2")
    page.select_option("#mode", "keyword")
    page.fill("#filters", "not a filter")
    page.click("#settings-form button[type=submit]")
    expect(page.locator("#filters-error")).to_contain_text("line 1")
    page.fill("#filters", "url^=http://127.0.0.1")
    page.click("#settings-form button[type=submit]")
    expect(page.locator("#settings-saved")).to_have_text("Saved.")
    screenshot(page, "settings")

    page.goto("/")
    turn = ask(page, "What is the flavor of the dark energy potion?")
    options = watched.chat_requests[-1]["ragtune"]
    assert options == {"top_k": 2, "mode": "keyword", "filters": ["url^=http://127.0.0.1"]}
    expect(turn.locator(".answer")).to_contain_text("cherry cola")
    assert 1 <= turn.locator(".sources li").count() <= 2

    # The filters reach retrieval: with one that nothing matches, there is no answer.
    page.goto("/settings")
    page.fill("#filters", "url^=https://nowhere.example/")
    page.click("#settings-form button[type=submit]")
    page.goto("/")
    turn = ask(page, "What is the flavor of the dark energy potion?")
    expect(turn).to_have_class(re.compile(r"\bnot-in-sources\b"))


# ---------------------------------------------------------------- sources and documents


@needs_chromium
def test_an_uploaded_file_is_ingested_and_listed(watched: Watched, tmp_path: Path) -> None:
    page = watched.page
    upload = tmp_path / "quartz-compass.md"
    upload.write_text(
        "# Quartz compass\n\nThe quartz compass points to lost keys. It costs 21 dollars.\n"
    )
    page.goto("/sources")
    page.set_input_files("#files", str(upload))
    page.click("#upload-form button[type=submit]")
    job = page.locator("#job")
    expect(job).to_be_visible()
    expect(job).to_have_attribute("data-status", "succeeded", timeout=JOB_SECONDS)
    expect(page.locator("#job-report")).to_contain_text("documents")
    screenshot(page, "sources-upload-report")

    page.goto("/documents")
    page.fill("#filter", "quartz")
    page.click("#filter-form button")
    row = page.locator("#documents tr")
    expect(row).to_have_count(1)
    expect(row.locator(".doc-title")).to_contain_text(re.compile("quartz", re.IGNORECASE))
    screenshot(page, "documents-uploaded")


@needs_chromium
def test_a_url_ingest_shows_progress_then_its_report(watched: Watched, shop_url: str) -> None:
    page = watched.page
    page.add_init_script(RECORD_JOB_STATES)
    page.goto("/sources")
    page.fill("#urls", f"{shop_url}/about")
    page.check("#crawl")
    page.fill("#max-pages", "3")
    page.select_option("#scope", "host")
    page.click("#url-form button[type=submit]")
    job = page.locator("#job")
    expect(job).to_be_visible()
    expect(page.locator("#job-status")).not_to_have_text("")
    screenshot(page, "sources-ingest-progress")
    expect(job).to_have_attribute("data-status", "succeeded", timeout=JOB_SECONDS)
    # The job was shown while it ran, then finished.
    states = page.evaluate("window.jobStates")
    assert states[0] in ("queued", "running") and states[-1] == "succeeded", states
    report = page.locator("#job-report .facts")
    expect(report).to_contain_text("documents")
    expect(report).to_contain_text("chunks")
    screenshot(page, "sources-ingest-report")
    first_job = job.get_attribute("data-job")
    expect(page.locator(f"#jobs tr[data-job='{first_job}']")).to_contain_text("succeeded")

    # A page that cannot be fetched fails the job, and says which and why.
    page.fill("#urls", f"{shop_url}/no-such-page")
    page.uncheck("#crawl")
    page.click("#url-form button[type=submit]")
    expect(job).not_to_have_attribute("data-job", first_job)
    expect(job).to_have_attribute("data-status", "failed", timeout=JOB_SECONDS)
    failure = page.locator("#job-report .failures li", has_text="/no-such-page")
    expect(failure).to_contain_text("404")
    expect(page.locator("#job-report .error")).to_contain_text("no-such-page")
    screenshot(page, "sources-ingest-failed")


@needs_chromium
def test_sync_runs_as_a_job(watched: Watched) -> None:
    page = watched.page
    page.goto("/sources")
    page.click("#sync")
    job = page.locator("#job")
    expect(job.locator("#job-title")).to_contain_text("sync")
    expect(job).to_have_attribute(
        "data-status", re.compile("succeeded|failed"), timeout=JOB_SECONDS
    )
    # Either way the page says what happened: the counts, or the one-line error.
    expect(page.locator("#job-report")).not_to_be_empty()
    screenshot(page, "sources-sync")


@needs_chromium
def test_a_document_is_deleted_after_confirming(watched: Watched, server: str) -> None:
    page = watched.page
    page.goto("/documents")
    expect(page.locator("#documents tr").first).to_be_visible()
    screenshot(page, "documents")
    page.fill("#filter", "privacy")
    page.click("#filter-form button")
    row = page.locator("#documents tr")
    expect(row).to_have_count(1)
    row.locator("button", has_text="Delete").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    page.click("#confirm-dialog button[value=cancel]")
    expect(row).to_have_count(1)
    row.locator("button", has_text="Delete").click()
    screenshot(page, "documents-confirm-delete")
    page.click("#confirm-ok")
    expect(page.locator("#documents tr")).to_have_count(0)
    expect(page.locator("#documents-summary")).to_contain_text("No document matches")
    listed = httpx.get(f"{server}/v1/documents", params={"q": "privacy"}).json()
    assert listed["total"] == 0


# ---------------------------------------------------------------- API keys


@needs_chromium
def test_the_key_prompt_when_the_server_asks_for_keys(
    browser: Browser, ui_index: Path, tmp_path: Path
) -> None:
    key = "rtk-" + secrets.token_urlsafe(32)
    key_file = tmp_path / "keys"
    key_file.write_text(f"{hash_key(key)} ui-test\n")
    config = serve_config(ui_index, tmp_path / "data", api_key_file=key_file)
    with running_server(config) as base:
        context = browser.new_context(base_url=base)
        try:
            page = context.new_page()
            page.goto("/documents")
            prompt = page.locator("#key-dialog")
            expect(prompt).to_be_visible()
            screenshot(page, "key-prompt")
            page.fill("#key-input", "rtk-" + "x" * 40)
            page.click("#key-save")
            # A wrong key is refused and asked for again.
            expect(prompt).to_be_visible()
            expect(prompt).to_contain_text("refused")
            page.fill("#key-input", key)
            page.click("#key-save")
            expect(prompt).to_be_hidden()
            expect(page.locator("#index-select")).to_have_value("shop")
            expect(page.locator("#documents tr").first).to_be_visible()
            assert page.evaluate("sessionStorage.getItem('ragtune.apiKey')") == key
            assert page.evaluate("localStorage.length") == 0 or key not in json.dumps(
                page.evaluate("Object.values(localStorage)")
            )
        finally:
            context.close()


@needs_chromium
def test_stop_ends_an_answer_being_written(watched: Watched, server: str) -> None:
    page = watched.page
    page.goto("/settings")
    page.fill("#top-k", "1")  # a short prompt: the model stops sooner once told to
    page.select_option("#answer-mode", "generate")
    page.click("#settings-form button[type=submit]")
    page.goto("/")
    page.fill("#question", "Describe every potion of the shop in detail.")
    page.click("#send")
    try:
        turn = page.locator(".turn.assistant").last
        # The passages came (the stream's first chunk); the model is still writing: a
        # small model on a CPU takes seconds to read its prompt.
        expect(turn.locator(".turn-status")).to_contain_text("answering", timeout=ANSWER_SECONDS)
        screenshot(page, "chat-answering")
        page.click("#stop")
        expect(turn.locator(".stopped")).to_have_text("Stopped.")
        expect(turn).not_to_have_attribute("aria-busy", "true")
        expect(page.locator("#send")).to_be_enabled()
        assert watched.chat_requests[-1]["ragtune"] == {"top_k": 1, "answer_mode": "generate"}
    finally:
        # The server stops the model and frees its slot once the stream is gone (and a
        # model still writing when the tests end would outlive the interpreter).
        page.close()
        wait_until_no_answer_in_flight(server)


def wait_until_no_answer_in_flight(server: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{server}/metrics").text
        if re.search(r"^ragtune_answers_in_flight 0(\.0)?$", metrics, re.MULTILINE):
            return
        time.sleep(0.2)
    raise AssertionError(f"an answer was still being written {seconds:.0f} s after Stop")
