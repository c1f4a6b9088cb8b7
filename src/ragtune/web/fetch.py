"""HTTP fetching that survives the real web, with one-line failures.

Retries with exponential backoff and jitter on timeouts, dropped connections,
408, 429 and 5xx; Retry-After honoured, and a 429 or 503 holds back the
whole host; a byte cap counted after decompression, so a gzip bomb stops at
the cap; a deadline for the whole response, so a server that drips bytes
cannot hold a worker; a redirect limit; conditional requests with ETag /
Last-Modified.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from ragtune import __version__
from ragtune.errors import FetchError, UnsupportedContentError
from ragtune.web.politeness import HostThrottle
from ragtune.web.urls import check_url, host_of

USER_AGENT = f"ragtune/{__version__} (+https://pypi.org/project/ragtune/)"
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown"})
JSON_TYPES = frozenset({"application/json", "application/ld+json"})
PDF_TYPES = frozenset({"application/pdf"})
READABLE_TYPES = HTML_TYPES | TEXT_TYPES | JSON_TYPES | PDF_TYPES
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_MAX_BYTES = 20 * 1024 * 1024


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

    @property
    def is_html(self) -> bool:
        return self.content_type in HTML_TYPES

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3
    backoff: float = 0.25  # seconds before the first retry; doubles each time, plus jitter
    max_retry_after: float = 60.0


class _Retryable(Exception):
    """A failure worth another try. ``host_wide`` when the server said it is
    overloaded (429, 503): then every request to it waits, not just this one."""

    def __init__(self, reason: str, wait: float | None = None, host_wide: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.host_wide = host_wide


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
    ) -> None:
        self.max_bytes = max_bytes
        self.retry = retry or RetryPolicy()
        self.throttle = throttle or HostThrottle()
        self.total_timeout = total_timeout or timeout * 3
        self.user_agent = user_agent
        self.accept = accept
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=True,
            max_redirects=max_redirects,
            headers={"User-Agent": user_agent},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
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
    ) -> FetchedPage:
        """GET ``url``; ``accept`` overrides the content types this fetcher reads."""
        check_url(url)
        host = host_of(url)
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.throttle.slot(host):
                    try:
                        page = self._attempt(url, validators, accept or self.accept)
                    except _Retryable as failure:
                        failure.wait = self._wait_before_retry(url, failure, attempt)
                        if failure.host_wide:
                            # Blocked before the slot is released, so no queued
                            # request to this host slips in during the wait.
                            self.throttle.block(host, failure.wait)
                        raise
                page.attempts = attempt
                return page
            except _Retryable as failure:
                if not failure.host_wide and failure.wait:
                    time.sleep(failure.wait)

    def _wait_before_retry(self, url: str, failure: _Retryable, attempt: int) -> float:
        """Seconds to wait before the next attempt; FetchError when there is none."""
        if attempt > self.retry.retries:
            raise FetchError(url, f"{failure.reason} (gave up after {attempt} attempts)")
        if failure.wait is None:
            base = self.retry.backoff * 2 ** (attempt - 1)
            return base + random.uniform(0, base)
        if failure.wait > self.retry.max_retry_after:
            raise FetchError(
                url,
                f"{failure.reason}; Retry-After {failure.wait:.0f} s is over the "
                f"{self.retry.max_retry_after:.0f} s limit",
            )
        return failure.wait

    def _attempt(
        self, url: str, validators: Validators | None, accept: frozenset[str]
    ) -> FetchedPage:
        headers = validators.headers() if validators else {}
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status in RETRY_STATUSES:
                    raise _Retryable(
                        f"HTTP {status} {response.reason_phrase}".strip(),
                        _retry_after(response.headers.get("retry-after")),
                        host_wide=status in (429, 503),
                    )
                if status >= 400:
                    raise FetchError(
                        url, f"HTTP {status} {response.reason_phrase or 'error'}".strip()
                    )
                if status == 304:
                    return self._page(url, response, b"", "")
                content_type = _media_type(response.headers.get("content-type", ""))
                if content_type not in accept:
                    raise UnsupportedContentError(
                        url, f"unsupported content type {content_type or 'unknown'}"
                    )
                body = self._read_limited(url, response)
                return self._page(url, response, body, content_type)
        except httpx.TooManyRedirects:
            raise FetchError(url, "too many redirects") from None
        except httpx.TimeoutException:
            raise _Retryable("timed out") from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as error:
            raise _Retryable(f"connection dropped ({_root_cause(error)})") from None
        except httpx.ConnectError as error:
            reason = _root_cause(error)
            if "refused" in reason.lower() or "reset" in reason.lower():
                raise _Retryable(f"cannot connect ({reason})") from None
            raise FetchError(url, f"cannot connect ({reason})") from None
        except httpx.DecodingError as error:
            raise FetchError(url, f"undecodable body ({_root_cause(error)})") from None
        except httpx.HTTPError as error:
            raise FetchError(url, f"request failed ({_root_cause(error)})") from None

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

    def _read_limited(self, url: str, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchError(
                url, f"response is {int(declared)} bytes, over the {self.max_bytes}-byte limit"
            )
        deadline = time.monotonic() + self.total_timeout
        chunks: list[bytes] = []
        size = 0
        # iter_bytes yields decompressed data, so a small gzip bomb meets this cap too.
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                compressed = response.headers.get("content-encoding")
                what = "decompressed body" if compressed else "response"
                raise FetchError(url, f"{what} exceeds the {self.max_bytes}-byte limit")
            if time.monotonic() > deadline:
                raise FetchError(url, f"body still arriving after {self.total_timeout:.0f} s")
            chunks.append(chunk)
        return b"".join(chunks)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def _root_cause(error: BaseException) -> str:
    # httpx wraps the socket error; the innermost message says what happened
    # ("Name or service not known", "Connection refused").
    cause: BaseException = error
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    message = str(cause) or type(cause).__name__
    return message.splitlines()[0]
