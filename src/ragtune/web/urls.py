"""URL normalisation and scoping for crawls."""

from __future__ import annotations

import fnmatch
import re
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

import httpx

from ragtune.errors import FetchError

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 8192
_BAD_HOST_CHARS = re.compile(r"[\s%<>\"{}|\\^`/?#@]")


def normalise(url: str) -> str:
    """One spelling per page: lower-case scheme and host (IDNA-encoded), no default
    port, no fragment, dot segments resolved, unsafe characters percent-encoded."""
    url = urldefrag(url.strip())[0]
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        return url
    scheme = parsed.scheme.lower()
    host = parsed.raw_host.decode("ascii").lower()
    if not host:
        return url
    port = parsed.port
    netloc = host if ":" not in host else f"[{host}]"
    if port and port != DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    path = parsed.raw_path.decode("ascii").split("?", 1)[0] or "/"
    path = _resolve_dots(path)
    query = parsed.query.decode("ascii")
    return urlunsplit((scheme, netloc, path, query, ""))


def check_url(url: str) -> None:
    """Reject anything that is not an absolute http(s) URL with a host."""
    if len(url) > MAX_URL_LENGTH:
        raise FetchError(url[:80] + "…", f"URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https"):
            httpx.URL(url)  # IDNA and character checks
    except (ValueError, httpx.InvalidURL) as error:
        raise FetchError(url, f"invalid URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        raise FetchError(url, "not an http(s) URL")
    if not parts.hostname:
        raise FetchError(url, "URL has no host")
    if _BAD_HOST_CHARS.search(parts.hostname):
        raise FetchError(url, "invalid URL (illegal characters in the host name)")


def absolute(base: str, href: str) -> str | None:
    """The absolute http(s) form of a link, or None for mailto:, javascript: and the like."""
    try:
        joined = urljoin(base, href.strip())
    except ValueError:
        return None
    if not joined.startswith(("http://", "https://")):
        return None
    return normalise(joined)


def host_of(url: str) -> str:
    return urlsplit(url).netloc.lower()


class UrlScope:
    """Which discovered URLs a crawl follows: same site by default, plus include/exclude globs."""

    def __init__(
        self,
        seeds: list[str],
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        same_site: bool = True,
    ) -> None:
        self.hosts = {host_of(seed) for seed in seeds}
        self.same_site = same_site
        self.include = [_compile(p) for p in include or []]
        self.exclude = [_compile(p) for p in exclude or []]

    def allows(self, url: str) -> bool:
        if self.same_site and host_of(url) not in self.hosts:
            return False
        if self.include and not any(p.search(url) for p in self.include):
            return False
        return not any(p.search(url) for p in self.exclude)


def _compile(pattern: str) -> re.Pattern[str]:
    """Globs such as */blog/* match anywhere in the URL; re:... is a regular expression."""
    if pattern.startswith("re:"):
        return re.compile(pattern[3:])
    return re.compile(fnmatch.translate(pattern).replace(r"\Z", "$"))


def _resolve_dots(path: str) -> str:
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if len(segments) > 1:
                segments.pop()
        elif segment != ".":
            segments.append(segment)
    resolved = "/".join(segments)
    if path.endswith(("/.", "/..")):
        resolved += "/"
    return resolved if resolved.startswith("/") else "/" + resolved
