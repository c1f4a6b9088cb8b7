"""JavaScript rendering with Playwright driving the system's Chromium.

``auto`` renders only pages whose static HTML carries scripts but almost no
text (an app shell); ``always`` renders every HTML page; ``never`` renders
nothing but reports such pages as needing rendering instead of indexing an
empty shell. Playwright's sync API belongs to the thread that started it, so
one dedicated thread owns the browser and crawler workers queue jobs to it.

A rendered page reaches its own origin only: what its scripts, images and
frames ask of any other origin (another site, or a service on the crawling
machine's network) is refused, and so is any redirect there.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any
from urllib.parse import urljoin, urlsplit

import lxml.etree
import lxml.html

from ragtune.errors import ExtractionError, RagtuneError
from ragtune.web.crawl import CrawlEvent
from ragtune.web.fetch import DEFAULT_MAX_BYTES

SHELL_TEXT_CHARS = 200
RENDER_TIMEOUT_MS = 30_000
MAX_RENDER_REDIRECTS = 10
CHROMIUM_ARGS = [
    "--headless=new",
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


def chromium_args(running_as_root: bool | None = None) -> list[str]:
    if running_as_root is None:
        running_as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    # Chromium will not start as root with its sandbox on (the sandbox drops to an
    # unprivileged user), so root, as in CI containers, must turn it off; everyone
    # else keeps it, to contain a compromised renderer.
    return [*CHROMIUM_ARGS, "--no-sandbox"] if running_as_root else list(CHROMIUM_ARGS)


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

    def __init__(self, mode: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.mode = mode
        self.max_bytes = max_bytes  # the fetch's byte cap holds for the DOM scripts build too
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
                executable_path=chromium_path(), args=chromium_args()
            )
        from playwright.sync_api import Error as PlaywrightError

        # Service workers would fetch around the route below: none are allowed.
        context = self._browser.new_context(
            user_agent="ragtune (rendering)", service_workers="block"
        )
        try:
            origin = _origin(url)
            context.route("**/*", lambda route: _same_origin_only(route, origin))
            context.route_web_socket("**/*", lambda socket: _same_origin_socket(socket, origin))
            tab = context.new_page()
            tab.goto(url, wait_until="networkidle", timeout=RENDER_TIMEOUT_MS)
            html = str(tab.content()).encode("utf-8")
        except PlaywrightError as error:
            raise ExtractionError(
                f"{url}: rendering failed ({str(error).splitlines()[0]})"
            ) from None
        finally:
            context.close()
        if len(html) > self.max_bytes:
            size, limit = len(html), self.max_bytes
            raise ExtractionError(
                f"{url}: the rendered page is {size} bytes, over the {limit}-byte limit"
            )
        return html

    def close(self) -> None:
        def shutdown() -> None:
            if self._browser is not None:
                self._browser.close()
                self._playwright.stop()

        self._thread.submit(shutdown).result()
        self._thread.shutdown()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _same_origin_only(route: Any, origin: str) -> None:
    """A rendered page's request, served only from ``origin``. Playwright does not
    route the hops of a redirect, so they are followed here, each checked, and
    Chromium is given the final response."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        response = _fetch_on_origin(route, origin)
    except PlaywrightError:
        response = None
    with suppress(PlaywrightError):  # the page may be gone
        if response is None:
            route.abort("blockedbyclient")
        else:
            route.fulfill(response=response)


def _fetch_on_origin(route: Any, origin: str) -> Any:
    """The response to ``route``'s request, redirects followed; None when it or a
    redirect leaves ``origin``, or redirects too often."""
    url = route.request.url
    for _ in range(MAX_RENDER_REDIRECTS + 1):
        if _origin(url) != origin:
            return None
        response = route.fetch(url=url, max_redirects=0, timeout=RENDER_TIMEOUT_MS)
        location = response.headers.get("location")
        if not (300 <= response.status < 400 and location):
            return response
        url = urljoin(url, location)
    return None


def _same_origin_socket(socket: Any, origin: str) -> None:
    ws_origin = _origin(socket.url).replace("ws", "http", 1)  # ws -> http, wss -> https
    if ws_origin == origin:
        socket.connect_to_server()
    else:
        socket.close()
