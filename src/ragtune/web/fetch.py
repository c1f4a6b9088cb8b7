"""HTTP fetching with clear, one-line failures."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from ragtune import __version__
from ragtune.errors import FetchError, UnsupportedContentError

USER_AGENT = f"ragtune/{__version__} (+https://pypi.org/project/ragtune/)"
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown"})
DEFAULT_MAX_BYTES = 20 * 1024 * 1024


@dataclass
class FetchedPage:
    url: str
    final_url: str
    status: int
    content_type: str
    body: bytes
    encoding: str | None

    @property
    def is_html(self) -> bool:
        return self.content_type in HTML_TYPES


class Fetcher:
    """A reusable HTTP client that returns FetchedPage or raises FetchError."""

    def __init__(
        self,
        timeout: float = 20.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_redirects: int = 10,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.max_bytes = max_bytes
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=True,
            max_redirects=max_redirects,
            headers={"User-Agent": user_agent},
        )

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def fetch(self, url: str) -> FetchedPage:
        check_url(url)
        try:
            with self._client.stream("GET", url) as response:
                if response.status_code >= 400:
                    phrase = response.reason_phrase or "error"
                    raise FetchError(url, f"HTTP {response.status_code} {phrase}")
                content_type = _media_type(response.headers.get("content-type", ""))
                if content_type not in HTML_TYPES | TEXT_TYPES:
                    raise UnsupportedContentError(
                        url, f"unsupported content type {content_type or 'unknown'}"
                    )
                body = self._read_limited(url, response)
                return FetchedPage(
                    url=url,
                    final_url=str(response.url),
                    status=response.status_code,
                    content_type=content_type,
                    body=body,
                    encoding=response.charset_encoding,
                )
        except httpx.TooManyRedirects:
            raise FetchError(url, "too many redirects") from None
        except httpx.TimeoutException:
            raise FetchError(url, "timed out") from None
        except httpx.ConnectError as error:
            raise FetchError(url, f"cannot connect ({_root_cause(error)})") from None
        except httpx.HTTPError as error:
            raise FetchError(url, f"request failed ({_root_cause(error)})") from None

    def _read_limited(self, url: str, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchError(
                url, f"response is {int(declared)} bytes, over the {self.max_bytes}-byte limit"
            )
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchError(url, f"response exceeds the {self.max_bytes}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)


def check_url(url: str) -> None:
    """Reject anything that is not an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise FetchError(url, f"invalid URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        raise FetchError(url, "not an http(s) URL")
    if not parts.hostname:
        raise FetchError(url, "URL has no host")


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
