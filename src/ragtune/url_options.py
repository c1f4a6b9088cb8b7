"""Options given as query parameters of an endpoint URL (``...?model=NAME&timeout=30``)."""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def split_url_options(url: str, names: Collection[str]) -> tuple[str, dict[str, str]]:
    """``url`` without its fragment and without the query parameters in ``names``,
    and those parameters; any other parameter stays in the URL."""
    parts = urlsplit(url)
    options: dict[str, str] = {}
    kept: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in names:
            options[key] = value
        else:
            kept.append((key, value))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept), "")), options
