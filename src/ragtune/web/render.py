"""JavaScript rendering with Playwright driving the system's Chromium.

``auto`` renders only pages whose static HTML carries scripts but almost no
text (an app shell); ``always`` renders every HTML page; ``never`` renders
nothing but reports such pages as needing rendering instead of indexing an
empty shell. Playwright's sync API belongs to the thread that started it, so
one dedicated thread owns the browser and crawler workers queue jobs to it.

A rendered page reaches its own origin only: what its scripts, images and
frames ask of any other origin (another site, or a service on the crawling
machine's network) is refused, and so is any redirect there. Origins the user
names (``--render-allow``, for an app's CDN or API) may be reached too.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

import lxml.etree
import lxml.html

from ragtune.errors import ExtractionError, FetchError, RagtuneError
from ragtune.web.crawl import CrawlEvent
from ragtune.web.fetch import DEFAULT_MAX_BYTES
from ragtune.web.urls import DEFAULT_PORTS, check_url, normalise

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


def allowed_origin(value: str) -> str:
    """``value``, an origin a rendered page may reach besides its own (such as
    https://cdn.example.com or http://127.0.0.1:8001), spelt as requests' origins
    are compared: lower case, IDNA-encoded, no default port. Anything else (another
    scheme, credentials, a path, a query) is a RagtuneError."""
    value = value.strip()
    try:
        check_url(value)
    except FetchError as error:
        raise RagtuneError(f"render allow-list: {error}") from None
    parts = urlsplit(value)
    if parts.path not in ("", "/") or "?" in value or "#" in value:
        problem = "an origin is scheme://host[:port], with no path, query or fragment"
    elif "*" in value:
        problem = "name each origin, without wildcards"
    elif not _port_in_range(parts):
        problem = "the port must be from 1 to 65535"
    else:
        return _origin(normalise(value))
    raise RagtuneError(f"render allow-list: {value}: {problem}")


def _port_in_range(parts: SplitResult) -> bool:
    try:
        return parts.port is None or parts.port > 0
    except ValueError:
        return False


class PageRenderer:
    """The crawler's on_fetched hook for --render auto|always|never; a rendered page
    may reach its own origin and ``allowed_origins``."""

    def __init__(
        self, mode: str, max_bytes: int = DEFAULT_MAX_BYTES, allowed_origins: Iterable[str] = ()
    ) -> None:
        self.mode = mode
        self.max_bytes = max_bytes  # the fetch's byte cap holds for the DOM scripts build too
        self.allowed_origins = frozenset(allowed_origin(origin) for origin in allowed_origins)
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
            page.body, blocked = self._thread.submit(self._render, page.final_url).result()
            page.rendered = True
            page.blocked_origins = tuple(sorted(blocked))

    def _render(self, url: str) -> tuple[bytes, set[str]]:
        """The page's DOM after its scripts ran, and the origins it was kept from."""
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
            origins = self.allowed_origins | {_origin(url)}
            blocked: set[str] = set()
            context.route("**/*", lambda route: _allowed_origins_only(route, origins, blocked))
            context.route_web_socket("**/*", lambda socket: _allowed_socket(socket, origins))
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
        return html, blocked

    def close(self) -> None:
        def shutdown() -> None:
            if self._browser is not None:
                self._browser.close()
                self._playwright.stop()

        self._thread.submit(shutdown).result()
        self._thread.shutdown()


def _origin(url: str) -> str:
    """scheme://host[:port] as Chromium spells a request's: lower case, no
    credentials, no default port. A WebSocket's is that of the http(s) server it
    upgrades from (ws -> http, wss -> https)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    try:
        port = parts.port
    except ValueError:  # out of range: as written, which no allowed origin is
        return f"{scheme}://{parts.netloc.lower()}"
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}"


def _allowed_origins_only(route: Any, origins: frozenset[str], blocked: set[str]) -> None:
    """A rendered page's request, served only from ``origins`` (the others it tried
    are added to ``blocked``). Playwright does not route the hops of a redirect, so
    they are followed here, each checked, and Chromium is given the final response."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        response = _fetch_within(route, origins, blocked)
    except PlaywrightError:
        response = None
    with suppress(PlaywrightError):  # the page may be gone
        if response is None:
            route.abort("blockedbyclient")
        else:
            route.fulfill(response=response)


def _fetch_within(route: Any, origins: frozenset[str], blocked: set[str]) -> Any:
    """The response to ``route``'s request, redirects followed; None when it or a
    redirect leaves ``origins``, or redirects too often."""
    url = route.request.url
    for _ in range(MAX_RENDER_REDIRECTS + 1):
        if _origin(url) not in origins:
            if url.startswith(("http://", "https://")):
                blocked.add(_origin(url))
            return None
        response = route.fetch(url=url, max_redirects=0, timeout=RENDER_TIMEOUT_MS)
        location = response.headers.get("location")
        if not (300 <= response.status < 400 and location):
            return response
        url = urljoin(url, location)
    return None


def _allowed_socket(socket: Any, origins: frozenset[str]) -> None:
    if _origin(socket.url) in origins:
        socket.connect_to_server()
    else:
        socket.close()
