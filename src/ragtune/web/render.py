"""JavaScript rendering with Playwright driving the system's Chromium.

``auto`` renders only pages whose static HTML carries scripts but almost no
text (an app shell); ``always`` renders every HTML page; ``never`` renders
nothing but reports such pages as needing rendering instead of indexing an
empty shell. Playwright's sync API belongs to the thread that started it, so
one dedicated thread owns the browser and crawler workers queue jobs to it.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import lxml.etree
import lxml.html

from ragtune.errors import ExtractionError, RagtuneError
from ragtune.web.crawl import CrawlEvent

SHELL_TEXT_CHARS = 200
RENDER_TIMEOUT_MS = 30_000
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def needs_rendering(html: bytes) -> bool:
    """True for an app shell: scripts, and next to no text without them."""
    try:
        tree = lxml.html.fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return False
    if not tree.xpath("//script"):
        return False
    for node in tree.xpath("//script|//style|//noscript|//template"):
        node.drop_tree()
    text = " ".join(tree.text_content().split())
    return len(text) < SHELL_TEXT_CHARS


def chromium_path() -> str:
    path = os.environ.get("RAGTUNE_CHROMIUM") or next(
        (
            found
            for name in ("chromium", "chromium-browser", "google-chrome")
            if (found := shutil.which(name))
        ),
        None,
    )
    if not path:
        raise RagtuneError(
            "JavaScript rendering needs Chromium: install it (apt-get install chromium) "
            "or set RAGTUNE_CHROMIUM to its path"
        )
    return path


class PageRenderer:
    """The crawler's on_fetched hook for --render auto|always|never."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragtune-render")
        self._playwright: Any = None
        self._browser: Any = None

    def __call__(self, event: CrawlEvent) -> None:
        page = event.page
        if page is None or not page.is_html:
            return
        shell = needs_rendering(page.body)
        if self.mode == "never":
            if shell:
                raise ExtractionError(
                    f"{event.url}: the page's content is built by JavaScript; "
                    "it needs rendering (use --render auto)"
                )
            return
        if self.mode == "always" or shell:
            page.body = self._thread.submit(self._render, page.final_url).result()
            page.rendered = True

    def _render(self, url: str) -> bytes:
        if self._browser is None:
            from playwright.sync_api import sync_playwright

            self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(
                executable_path=chromium_path(), args=CHROMIUM_ARGS
            )
        from playwright.sync_api import Error as PlaywrightError

        context = self._browser.new_context(user_agent="ragtune (rendering)")
        try:
            tab = context.new_page()
            tab.goto(url, wait_until="networkidle", timeout=RENDER_TIMEOUT_MS)
            return str(tab.content()).encode("utf-8")
        except PlaywrightError as error:
            raise ExtractionError(
                f"{url}: rendering failed ({str(error).splitlines()[0]})"
            ) from None
        finally:
            context.close()

    def close(self) -> None:
        def shutdown() -> None:
            if self._browser is not None:
                self._browser.close()
                self._playwright.stop()

        self._thread.submit(shutdown).result()
        self._thread.shutdown()
