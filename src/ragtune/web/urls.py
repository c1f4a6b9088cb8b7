"""URL normalisation and scoping for crawls."""

from __future__ import annotations

import fnmatch
import re
from typing import Literal
from urllib.parse import parse_qsl, urldefrag, urljoin, urlsplit, urlunsplit

import httpx

from ragtune.errors import FetchError, RagtuneError
from ragtune.net.deadline import host_name_encodes
from ragtune.url_options import is_secret_name, redact

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 8192
_BAD_HOST_CHARS = re.compile(r"[\s%<>\"{}|\\^`/?#@]")
# scheme://user:password@ — up to the last @ before any query or fragment, so a
# password with a stray / in it is hidden whole.
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^?#]*@")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
# RFC 3986 section 2.3: the characters an escape never changes the meaning of.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def normalise(url: str) -> str:
    """One spelling per page (RFC 3986 section 6.2.2): lower-case scheme and host
    (IDNA-encoded), no default port, no fragment, unsafe characters percent-encoded,
    escapes normalised (``normalise_escapes``), then dot segments resolved. The query
    keeps its parameters in their order."""
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
    path = _resolve_dots(normalise_escapes(path))
    query = normalise_escapes(parsed.query.decode("ascii"))
    return urlunsplit((scheme, netloc, path, query, ""))


def normalise_escapes(component: str) -> str:
    """A path or query with each percent-escape in one spelling: an escaped unreserved
    character decoded (``%7E`` -> ``~``, ``%41`` -> ``A``), any other escape with
    upper-case hex digits (``%c3%a9`` -> ``%C3%A9``). Reserved characters stay escaped
    (``%2F``, ``%3F``, ``%26``, ``%3D``, ``%2B``): decoding them would change the URL's
    meaning, a ``%2F`` into a path separator, a ``%26`` into a parameter break."""
    return _ESCAPE.sub(_one_escape, component)


def _one_escape(match: re.Match[str]) -> str:
    character = chr(int(match.group(1), 16))
    return character if character in _UNRESERVED else match.group(0).upper()


def check_url(url: str) -> None:
    """Reject anything that is not an absolute http(s) URL with a host, and URLs that
    carry a user name or password: ragtune sends no credentials, and a URL it reports
    or records must not hold them. The error names the URL with them hidden."""
    shown = redact(mask_userinfo(url))
    if len(url) > MAX_URL_LENGTH:
        raise FetchError(
            shown[:80] + "…", f"URL is longer than {MAX_URL_LENGTH} characters", kind="invalid_url"
        )
    host = ""
    try:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and "@" not in parts.netloc:
            host = httpx.URL(url).raw_host.decode("ascii")  # IDNA and character checks
    except (ValueError, httpx.InvalidURL) as error:
        # The parser's message may quote a piece of a password; then say less.
        detail = "" if shown != url else f" ({error})"
        raise FetchError(shown, f"invalid URL{detail}", kind="invalid_url") from None
    if parts.scheme not in ("http", "https"):
        raise FetchError(shown, "not an http(s) URL", kind="invalid_url")
    if "@" in parts.netloc:
        raise FetchError(
            shown,
            "URL has a user name or password in it; ragtune sends no credentials",
            kind="invalid_url",
        )
    if not parts.hostname:
        raise FetchError(shown, "URL has no host", kind="invalid_url")
    if _BAD_HOST_CHARS.search(parts.hostname):
        raise FetchError(
            shown, "invalid URL (illegal characters in the host name)", kind="invalid_url"
        )
    if not host_name_encodes(host):
        raise FetchError(shown, "invalid URL (bad host name)", kind="invalid_url")


def check_seed(url: str) -> None:
    """check_url, and refuse a URL the user names whose query carries a secret
    (``?token=``, ``?api_key=``, a signature): the URL is what the index keeps, cites
    and reports, so the secret would be written down and shown. Links a crawl finds
    are the site's own and are not held to this."""
    check_url(url)
    names = [name for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)]
    secret = next((name for name in names if is_secret_name(name)), None)
    if secret is not None:
        raise FetchError(
            redact(url),
            f"URL has a secret in its query ({secret}=...); the index would keep and show "
            "it, so ragtune refuses such URLs",
            kind="invalid_url",
        )


def mask_userinfo(url: str) -> str:
    """``url`` with anything that may be a user name or password replaced by ***."""
    return _USERINFO.sub(r"\1***@", url)


def seed_key(url: str) -> str:
    """How a URL the user named appears in reports and records: normalised, or, when
    it cannot be fetched, as given with any credentials hidden."""
    try:
        check_seed(url)
    except FetchError as error:
        return error.url
    return normalise(url)


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


def _site_of(host: str) -> str:
    # example.com and www.example.com are one site (a seed commonly redirects from one
    # to the other); any other subdomain, and any other port, is another site.
    return host.removeprefix("www.")


def _domain_of(url: str) -> str:
    """The registrable domain of ``url``'s host (docs.example.co.uk -> example.co.uk),
    from the public suffix list; the host itself for an IP address or a bare name."""
    from tld import get_fld  # trafilatura's URL library needs it too

    host = urlsplit(url).hostname or ""
    return str(get_fld(url, fail_silently=True) or host)


def directory_of(url: str) -> str:
    """The folder a URL's page lives in, as a path prefix: /library/index.html and
    /library/ both give /library/; /products gives /."""
    path = urlsplit(url).path or "/"
    return path[: path.rfind("/") + 1]


# How far a crawl may wander from its seeds: the folder a seed's page is in (the
# default, as Firecrawl and wget --no-parent), the seed's host, or its whole domain.
CrawlScope = Literal["path", "host", "domain"]
CRAWL_SCOPES: tuple[CrawlScope, ...] = ("path", "host", "domain")


class UrlScope:
    """Which discovered URLs a crawl follows: by default those in a seed's folder on
    its host (``scope="path"``), or anywhere on its host, or on its domain; then the
    include/exclude globs. ``same_site=False`` allows every host (the Python API's
    ``WebReader(same_site=False)``)."""

    def __init__(
        self,
        seeds: list[str],
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        same_site: bool = True,
        scope: CrawlScope = "path",
    ) -> None:
        if scope not in CRAWL_SCOPES:
            raise RagtuneError(f"unknown crawl scope {scope!r}; use path, host or domain")
        self.hosts = {_site_of(host_of(seed)) for seed in seeds}
        self.domains = {_domain_of(seed) for seed in seeds} if scope == "domain" else set()
        # Per site, the folders its seeds are in: a crawl from two seeds covers both.
        self.folders: dict[str, set[str]] = {}
        for seed in seeds:
            self.folders.setdefault(_site_of(host_of(seed)), set()).add(directory_of(seed))
        self.same_site = same_site
        self.scope = scope
        self.include = [_compile(p) for p in include or []]
        self.exclude = [_compile(p) for p in exclude or []]

    def allows_host(self, url: str) -> bool:
        """Whether ``url`` is on a host the crawl may reach at all (its seeds' hosts,
        or any host of their domains); for sitemaps, robots.txt and seed redirects."""
        if not self.same_site:
            return True
        if self.scope == "domain":
            host = urlsplit(url).hostname or ""
            return any(host == d or host.endswith("." + d) for d in self.domains)
        return _site_of(host_of(url)) in self.hosts

    def allows_path(self, url: str) -> bool:
        """Whether ``url`` is inside a seed's folder (always true outside path scope)."""
        if not self.same_site or self.scope != "path":
            return True
        path = urlsplit(url).path or "/"
        folders = self.folders.get(_site_of(host_of(url)), set())
        return any(path.startswith(folder) for folder in folders)

    def allows(self, url: str) -> bool:
        if not (self.allows_host(url) and self.allows_path(url)):
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
