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

Under a guarding address policy (``ragtune serve``) Chromium's own network stack
is not trusted to keep to it: every request the page makes is fetched by a
guarded httpx client instead (the parser and the address check that every other
fetch uses) and the answer handed to Chromium; WebSockets are refused, and
anything Chromium might still send past the route (a preconnect, WebRTC) goes
to a proxy address nothing listens on.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

import httpx
import lxml.etree
import lxml.html

from ragtune.errors import AddressRefused, ExtractionError, FetchError, RagtuneError
from ragtune.net.address_guard import AddressPolicy
from ragtune.net.deadline import Deadline, deadline_client
from ragtune.web.crawl_events import CrawlEvent
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
# Under the address guard every request is fulfilled from the route; whatever
# Chromium would still send on its own goes to a proxy nothing listens on (the
# discard port), loopback included, and WebRTC keeps to the proxy too.
GUARDED_CHROMIUM_ARGS = [
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--dns-prefetch-disable",
]
# Hop-by-hop headers, and those httpx sets itself, are not passed on either way.
_REQUEST_HEADERS_DROPPED = frozenset(
    {
        "host",
        "connection",
        "content-length",
        "transfer-encoding",
        "keep-alive",
        "upgrade",
        "accept-encoding",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
    }
)
_RESPONSE_HEADERS_DROPPED = frozenset(
    {"connection", "content-length", "transfer-encoding", "keep-alive", "content-encoding"}
)


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
        self,
        mode: str,
        max_bytes: int = DEFAULT_MAX_BYTES,
        allowed_origins: Iterable[str] = (),
        address_policy: AddressPolicy | None = None,
    ) -> None:
        self.mode = mode
        self.max_bytes = max_bytes  # the fetch's byte cap holds for the DOM scripts build too
        self.allowed_origins = frozenset(allowed_origin(origin) for origin in allowed_origins)
        self.address_policy = address_policy or AddressPolicy()
        # The guarded client that fetches a rendered page's requests (render thread only).
        self._client: httpx.Client | None = None
        self._deadline = Deadline()
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

            args = chromium_args()
            if self.address_policy.guards:
                args += GUARDED_CHROMIUM_ARGS
                self._client = deadline_client(
                    self._deadline,
                    self.address_policy,
                    timeout=httpx.Timeout(RENDER_TIMEOUT_MS / 1000),
                    follow_redirects=False,  # each hop is checked against the origins
                )
            self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(
                executable_path=chromium_path(), args=args
            )
        from playwright.sync_api import Error as PlaywrightError

        # Service workers would fetch around the route below: none are allowed.
        context = self._browser.new_context(
            user_agent="ragtune (rendering)", service_workers="block"
        )
        try:
            origins = self.allowed_origins | {_origin(url)}
            blocked: set[str] = set()
            if self._client is not None:
                guarded = _GuardedRoutes(self._client, self._deadline, origins, self.max_bytes)
                context.route("**/*", lambda route: guarded.serve(route, blocked))
                context.route_web_socket("**/*", lambda socket: socket.close())
            else:
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
            if self._client is not None:
                self._client.close()

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


class _GuardedRoutes:
    """A rendered page's requests fetched by the guarded client, not by Chromium:
    only from ``origins``, each redirect hop checked, each connection put to the
    client's address policy; a refused or failed request is aborted."""

    def __init__(
        self, client: httpx.Client, deadline: Deadline, origins: frozenset[str], max_bytes: int
    ) -> None:
        self._client = client
        self._deadline = deadline
        self._origins = origins
        self._max_bytes = max_bytes

    def serve(self, route: Any, blocked: set[str]) -> None:
        from playwright.sync_api import Error as PlaywrightError

        try:
            answer = self._fetch(route.request, blocked)
        except (AddressRefused, httpx.HTTPError, httpx.InvalidURL, _TooLarge):
            answer = None
        with suppress(PlaywrightError):  # the page may be gone
            if answer is None:
                route.abort("blockedbyclient")
            else:
                status, headers, body = answer
                route.fulfill(status=status, headers=headers, body=body)

    def _fetch(self, request: Any, blocked: set[str]) -> tuple[int, dict[str, str], bytes] | None:
        url, method = request.url, request.method
        body: bytes | None = request.post_data_buffer
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in _REQUEST_HEADERS_DROPPED
        }
        for _ in range(MAX_RENDER_REDIRECTS + 1):
            if _origin(url) not in self._origins:
                if url.startswith(("http://", "https://")):
                    blocked.add(_origin(url))
                return None
            with self._deadline.within(RENDER_TIMEOUT_MS / 1000):
                answer = self._exchange(method, url, headers, body)
            if isinstance(answer, tuple):
                return answer
            if method != "HEAD":  # a redirect is followed with a GET, as browsers mostly do
                method, body = "GET", None
            url = urljoin(url, answer)
        return None

    def _exchange(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, dict[str, str], bytes] | str:
        """One request: the response to hand Chromium, or where it redirects."""
        with self._client.stream(method, url, headers=headers, content=body) as response:
            location = response.headers.get("location")
            if 300 <= response.status_code < 400 and location:
                return location
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():  # decoded, hence no Content-Encoding below
                size += len(chunk)
                if size > self._max_bytes:
                    raise _TooLarge
                chunks.append(chunk)
            kept = {
                name: value
                for name, value in response.headers.items()
                if name.lower() not in _RESPONSE_HEADERS_DROPPED
            }
            return response.status_code, kept, b"".join(chunks)


class _TooLarge(Exception):
    """A response to a rendered page over the byte cap."""


def _allowed_socket(socket: Any, origins: frozenset[str]) -> None:
    if _origin(socket.url) in origins:
        socket.connect_to_server()
    else:
        socket.close()
