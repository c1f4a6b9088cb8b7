"""HTTP fetching that survives the real web, with one-line failures.

Retries with exponential backoff and jitter on timeouts, dropped or refused
connections, and the statuses 408, 429, 500, 502, 503 and 504 (``RETRY_STATUSES``;
501, 505 and every other error status fail at once); Retry-After honoured, and a
429 or 503 holds back the whole host; a byte cap counted after decompression, so a
gzip bomb stops at the cap; a deadline for the whole response, headers and body, so
a server that drips bytes cannot hold a worker; redirects followed one hop at a
time, only to http(s) URLs and without credentials, each hop throttled as a request
to its own host and put to the caller's ``check_redirect`` (the crawler keeps hops
in its scope and under robots.txt); conditional requests with ETag / Last-Modified.
Given a guarding ``address_policy`` (``ragtune serve``), every connection, each
redirect hop's included, is made only to an address the policy allows
(``net/address_guard.py``); a refused one fails the fetch with AddressRefused.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin

import httpx

from ragtune.errors import (
    AddressRefused,
    FetchError,
    FetchErrorKind,
    RedirectRefused,
    ResponseTimeout,
    UnsupportedContentError,
)
from ragtune.extract.media_types import HTML_TYPES, READABLE_TYPES
from ragtune.net.address_guard import AddressPolicy
from ragtune.net.causes import refused_or_reset, root_message
from ragtune.net.deadline import Deadline, deadline_client
from ragtune.net.retry import RETRY_STATUSES, backoff_seconds, retry_after_seconds
from ragtune.version import __version__
from ragtune.web.politeness import HostThrottle
from ragtune.web.urls import check_url, host_of, normalise

USER_AGENT = f"ragtune/{__version__} (+https://pypi.org/project/ragtune/)"
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")

RedirectCheck = Callable[[str], str | None]
"""Asked with a redirect's target before it is followed: a reason to refuse, or None."""


@dataclass
class Validators:
    """What a previous fetch of a URL said about its version, for a conditional GET."""

    etag: str | None = None
    last_modified: str | None = None
    # The page's links when it was fetched: a crawl follows them on 304 Not Modified.
    links: tuple[str, ...] = ()

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


@dataclass
class FetchedPage:
    url: str
    final_url: str
    status: int
    content_type: str
    body: bytes
    encoding: str | None
    etag: str | None = None
    last_modified: str | None = None
    attempts: int = 1
    rendered: bool = False  # the body is the DOM after JavaScript ran
    truncated: bool = False  # the body stops at the byte cap (a fetch with truncate=True)
    # Origins a rendered page's requests went to and were refused (see --render-allow).
    blocked_origins: tuple[str, ...] = ()

    @property
    def is_html(self) -> bool:
        return self.content_type in HTML_TYPES

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass(frozen=True)
class _Request:
    """One fetch: the URL asked for and how its response is read, over all redirects."""

    url: str
    accept: frozenset[str]
    max_bytes: int
    truncate: bool
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3
    backoff: float = 0.25  # seconds before the first retry; doubles each time, plus jitter
    max_retry_after: float = 60.0


class _BadRedirect(Exception):
    """A redirect to something other than a valid http(s) URL."""


class _Retryable(Exception):
    """A failure worth another try, of the ``kind`` it will be reported as if none is
    left. ``host_wide`` when the server said it is overloaded (429, 503): then every
    request to it waits, not just this one."""

    def __init__(
        self,
        reason: str,
        kind: FetchErrorKind,
        wait: float | None = None,
        host_wide: bool = False,
        *,
        status: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.wait = wait
        self.host_wide = host_wide
        self.status = status


class Fetcher:
    """A reusable, thread-safe HTTP client that returns FetchedPage or raises FetchError."""

    def __init__(
        self,
        timeout: float = 20.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_redirects: int = 10,
        user_agent: str = USER_AGENT,
        retry: RetryPolicy | None = None,
        throttle: HostThrottle | None = None,
        total_timeout: float | None = None,
        accept: frozenset[str] = READABLE_TYPES,
        address_policy: AddressPolicy | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.retry = retry or RetryPolicy()
        self.throttle = throttle or HostThrottle()
        self.total_timeout = total_timeout or timeout * 3
        self.user_agent = user_agent
        self.accept = accept
        self.address_policy = address_policy or AddressPolicy()
        self._deadline = Deadline()
        self._client = deadline_client(
            self._deadline,
            self.address_policy,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=False,  # fetch() follows them, checking each hop
            headers={"User-Agent": user_agent},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            # Before httpx reads a Location itself: for some (data:, javascript:) it
            # raises InvalidURL, which is no HTTPError.
            event_hooks={"response": [_check_location]},
        )

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def fetch(
        self,
        url: str,
        validators: Validators | None = None,
        accept: frozenset[str] | None = None,
        *,
        max_bytes: int | None = None,
        truncate: bool = False,
        check_redirect: RedirectCheck | None = None,
    ) -> FetchedPage:
        """GET ``url``, following redirects to http(s) URLs that ``check_redirect``
        (when given) does not refuse.

        ``accept`` and ``max_bytes`` override the content types this fetcher reads
        and its byte cap; with ``truncate`` a longer body is cut at the cap (and the
        page marked ``truncated``) instead of failing.
        """
        check_url(url)
        request = _Request(
            url,
            accept or self.accept,
            max_bytes or self.max_bytes,
            truncate,
            validators.headers() if validators else {},
        )
        hop = url
        for _ in range(self.max_redirects + 1):
            result = self._fetch_hop(request, hop)
            if isinstance(result, FetchedPage):
                return result
            refusal = check_redirect(result) if check_redirect else None
            if refusal:
                raise RedirectRefused(url, refusal)
            hop = result
        raise FetchError(url, "too many redirects", kind="redirect")

    def _fetch_hop(self, request: _Request, hop: str) -> FetchedPage | str:
        """The page at ``hop``, or where it redirects to; retried as RetryPolicy says."""
        host = host_of(hop)
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.throttle.slot(host):
                    try:
                        result = self._attempt(request, hop)
                    except _Retryable as failure:
                        failure.wait = self._wait_before_retry(request.url, failure, attempt)
                        if failure.host_wide:
                            # Blocked before the slot is released, so no queued
                            # request to this host slips in during the wait.
                            self.throttle.block(host, failure.wait)
                        raise
                if isinstance(result, FetchedPage):
                    result.attempts = attempt
                return result
            except _Retryable as failure:
                if not failure.host_wide and failure.wait:
                    time.sleep(failure.wait)

    def _wait_before_retry(self, url: str, failure: _Retryable, attempt: int) -> float:
        """Seconds to wait before the next attempt; FetchError when there is none."""
        if attempt > self.retry.retries:
            reason = f"{failure.reason} (gave up after {attempt} attempts)"
            if failure.kind == "timeout":
                raise ResponseTimeout(url, reason)
            raise FetchError(url, reason, kind=failure.kind, status=failure.status)
        if failure.wait is None:
            return backoff_seconds(attempt, self.retry.backoff)
        if failure.wait > self.retry.max_retry_after:
            raise FetchError(
                url,
                f"{failure.reason}; Retry-After {failure.wait:.0f} s is over the "
                f"{self.retry.max_retry_after:.0f} s limit",
                kind=failure.kind,
                status=failure.status,
            )
        return failure.wait

    def _attempt(self, request: _Request, hop: str) -> FetchedPage | str:
        url = request.url
        with self._deadline.within(self.total_timeout):
            try:
                return self._exchange(request, hop)
            except AddressRefused as error:  # raised at connect time, naming only the host
                where = "" if hop == url else f"redirect to {hop}: "
                raise AddressRefused(url, where + error.reason) from None
            except httpx.TimeoutException:
                if self._deadline.passed():
                    # A server this slow will be as slow again: no retry.
                    raise ResponseTimeout(
                        url, f"timed out: no complete response within {self.total_timeout:g} s"
                    ) from None
                raise _Retryable("timed out", "timeout") from None
            except (httpx.RemoteProtocolError, httpx.ReadError) as error:
                raise _Retryable(
                    f"connection dropped ({root_message(error)})", "connection"
                ) from None
            except httpx.ConnectError as error:
                reason = f"cannot connect ({root_message(error)})"
                if refused_or_reset(error):  # a server restarting: worth another try
                    raise _Retryable(reason, "connection") from None
                raise FetchError(url, reason, kind="connection") from None
            except _BadRedirect as error:
                raise FetchError(url, str(error), kind="redirect") from None
            except httpx.DecodingError as error:
                reason = f"undecodable body ({root_message(error)})"
                raise FetchError(url, reason, kind="undecodable") from None
            except httpx.InvalidURL:
                raise FetchError(url, "redirect to an invalid URL", kind="redirect") from None
            except httpx.HTTPError as error:
                reason = f"request failed ({root_message(error)})"
                raise FetchError(url, reason, kind="connection") from None

    def _exchange(self, request: _Request, hop: str) -> FetchedPage | str:
        """One GET of ``hop``: its page, or the URL it redirects to."""
        url = request.url
        with self._client.stream("GET", hop, headers=request.headers) as response:
            status = response.status_code
            if response.has_redirect_location:
                return _redirect_target(hop, response.headers["location"])
            if status in RETRY_STATUSES:
                raise _Retryable(
                    f"HTTP {status} {response.reason_phrase}".strip(),
                    "http_status",
                    retry_after_seconds(response.headers.get("retry-after")),
                    host_wide=status in (429, 503),
                    status=status,
                )
            if status >= 400:
                reason = f"HTTP {status} {response.reason_phrase or 'error'}".strip()
                raise FetchError(url, reason, kind="http_status", status=status)
            if status == 304:
                return self._page(url, response, b"", "")
            content_type = _media_type(response.headers.get("content-type", ""))
            if content_type not in request.accept:
                raise UnsupportedContentError(
                    url, f"unsupported content type {content_type or 'unknown'}"
                )
            body, truncated = _read_limited(request, response)
            page = self._page(url, response, body, content_type)
            page.truncated = truncated
            return page

    def _page(
        self, url: str, response: httpx.Response, body: bytes, content_type: str
    ) -> FetchedPage:
        return FetchedPage(
            url=url,
            final_url=str(response.url),
            status=response.status_code,
            content_type=content_type,
            body=body,
            encoding=response.charset_encoding,
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
        )


def _read_limited(request: _Request, response: httpx.Response) -> tuple[bytes, bool]:
    """The body, up to the request's byte cap; whether it was cut there."""
    limit = request.max_bytes
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit and not request.truncate:
        raise FetchError(
            request.url,
            f"response is {int(declared)} bytes, over the {limit}-byte limit",
            kind="too_large",
        )
    chunks: list[bytes] = []
    size = 0
    # iter_bytes yields decompressed data, so a small gzip bomb meets this cap too.
    for chunk in response.iter_bytes():
        if size + len(chunk) > limit:
            if request.truncate:
                chunks.append(chunk[: limit - size])
                return b"".join(chunks), True
            compressed = response.headers.get("content-encoding")
            what = "decompressed body" if compressed else "response"
            raise FetchError(
                request.url, f"{what} exceeds the {limit}-byte limit", kind="too_large"
            )
        size += len(chunk)
        chunks.append(chunk)
    return b"".join(chunks), False


def _check_location(response: httpx.Response) -> None:
    if response.has_redirect_location:
        _redirect_target(str(response.request.url), response.headers["location"])


def _redirect_target(hop: str, location: str) -> str:
    """Where a redirect from ``hop`` leads, normalised (so without credentials);
    _BadRedirect for anything but a valid http(s) URL."""
    try:
        target = urljoin(hop, location.strip())
    except ValueError:
        raise _BadRedirect("redirect to an invalid URL") from None
    scheme = _SCHEME.match(target)
    if not scheme or scheme.group().lower() not in ("http:", "https:"):
        named = f"a {scheme.group()[:20].lower()} URL" if scheme else "a URL"
        raise _BadRedirect(f"redirect to {named}, not an http(s) URL")
    target = normalise(target)
    try:
        check_url(target)
    except FetchError as error:
        raise _BadRedirect(f"redirect to {error.url}: {error.reason}") from None
    return target


def _media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()
