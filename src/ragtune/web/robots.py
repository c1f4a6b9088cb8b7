"""robots.txt, read with protego and cached per origin, following RFC 9309.

A missing robots.txt (4xx) allows everything; a server error (5xx)
disallows everything for this crawl, as the RFC asks. A robots.txt that does
not arrive in time marks the host too slow to crawl: its pages would take as
long each. Its redirects are followed to any http(s) host, as the RFC allows
(reading rules indexes nothing).
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from protego import Protego

from ragtune.errors import FetchError, ResponseTimeout
from ragtune.web.fetch import Fetcher

ROBOTS_MAX_BYTES = 512 * 1024
ROBOTS_TYPES = frozenset({"text/plain", "text/html", ""})
_ALLOW_ALL = Protego.parse("")
_DISALLOW_ALL = Protego.parse("User-agent: *\nDisallow: /\n")


class RobotsPolicy:
    def __init__(self, fetcher: Fetcher, user_agent: str, obey: bool = True) -> None:
        self.fetcher = fetcher
        self.user_agent = user_agent
        self.obey = obey
        self._rules: dict[str, Protego] = {}
        self._too_slow: dict[str, str] = {}  # origin -> why its robots.txt never came
        self._lock = threading.Lock()

    def rules(self, url: str) -> Protego:
        origin = _origin(url)
        with self._lock:
            cached = self._rules.get(origin)
        if cached is not None:
            return cached
        rules = self._load(origin)
        with self._lock:
            self._rules.setdefault(origin, rules)
        return rules

    def too_slow(self, url: str) -> str | None:
        """Why ``url``'s host is too slow to crawl (its robots.txt timed out), or None."""
        if not self.obey:
            return None
        self.rules(url)
        with self._lock:
            return self._too_slow.get(_origin(url))

    def allowed(self, url: str) -> bool:
        return not self.obey or self.rules(url).can_fetch(url, self.user_agent)

    def crawl_delay(self, url: str) -> float | None:
        if not self.obey:
            return None
        delay = self.rules(url).crawl_delay(self.user_agent)
        return float(delay) if delay is not None else None

    def sitemaps(self, url: str) -> list[str]:
        return list(self.rules(url).sitemaps)

    def _load(self, origin: str) -> Protego:
        try:
            # The first 512 KiB are read, as RFC 9309 allows: a huge file is not
            # an error, and so never a licence to crawl everything.
            page = self.fetcher.fetch(
                f"{origin}/robots.txt",
                accept=ROBOTS_TYPES,
                max_bytes=ROBOTS_MAX_BYTES,
                truncate=True,
            )
        except ResponseTimeout as error:
            with self._lock:
                self._too_slow[origin] = f"its robots.txt {error.reason}"
            return _DISALLOW_ALL
        except FetchError as error:
            if error.status is not None and error.status >= 500:
                return _DISALLOW_ALL  # the site is in trouble: stay away, as RFC 9309 asks
            # No robots.txt (4xx) allows everything; an unreachable host will fail
            # on the page itself, with the real reason.
            return _ALLOW_ALL
        if page.content_type == "text/html":
            return _ALLOW_ALL  # an HTML error page served as robots.txt says nothing
        text = page.body.decode("utf-8", errors="replace")
        return Protego.parse(text)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
