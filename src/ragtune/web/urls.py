"""URL normalisation and scoping for crawls."""

from __future__ import annotations

import fnmatch
import re
from urllib.parse import parse_qsl, urldefrag, urljoin, urlsplit, urlunsplit

import httpx

from ragtune.errors import FetchError
from ragtune.net.deadline import host_name_encodes
from ragtune.url_options import is_secret_name, redact

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 8192
_BAD_HOST_CHARS = re.compile(r"[\s%<>\"{}|\\^`/?#@]")
# scheme://user:password@ — up to the last @ before any query or fragment, so a
# password with a stray / in it is hidden whole.
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^?#]*@")


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


class UrlScope:
    """Which discovered URLs a crawl follows: same site by default, plus include/exclude globs."""

    def __init__(
        self,
        seeds: list[str],
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        same_site: bool = True,
    ) -> None:
        self.hosts = {_site_of(host_of(seed)) for seed in seeds}
        self.same_site = same_site
        self.include = [_compile(p) for p in include or []]
        self.exclude = [_compile(p) for p in exclude or []]

    def allows_host(self, url: str) -> bool:
        return not self.same_site or _site_of(host_of(url)) in self.hosts

    def allows(self, url: str) -> bool:
        if not self.allows_host(url):
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
