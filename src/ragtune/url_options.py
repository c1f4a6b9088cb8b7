"""Model specs (``scheme:target`` with ``#name=value`` or ``?name=value`` options), options
given as query parameters of an endpoint URL (``...?model=NAME&timeout=30``), and the
one rule for keeping secrets out of what ragtune shows and stores.

:func:`parse_spec` is how every ``--llm`` and ``--embed-model`` spec is read: the
factories look its scheme up in their table; the backend reads its options.

:func:`redact` is applied to every URL, DSN or third-party message before it is
printed, raised or written to disk (the manifest, reports, error messages).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

MASK = "***"
_SPEC_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")  # two letters at least: not C:\\
# A parameter or DSN keyword whose name ends in one of these words (after
# lower-casing and turning - into _) holds a secret: password=, sslpassword=,
# api_key=, api-key=, x-api-key=, key=, access_token=, client_secret=,
# X-Amz-Signature=. Short words count only as whole words, so sslkey= (a file
# path) and monkey= do not.
_SECRET_NAME = re.compile(
    r"(?:password|passwd|passphrase|secret|token|apikey|credentials?|signature"
    r"|(?:^|_)(?:pass|pwd|key|auth|authorization|sig))$"
)
_AUTHORITY_END = re.compile(r"[/?#]")
# What an authority without userinfo looks like: a host (or [IPv6]) and a numeric port.
_PLAIN_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]*\]|[^:@\[\]]*)(?::\d*)?")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
_PAIR = re.compile(
    r"(?P<name>\b[A-Za-z_][\w-]*)(?P<eq>\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|[^\s&;,]+)"
)
# A credential as HTTP headers carry it: "Authorization: Basic ...", "X-Api-Key: ...",
# or a bare "Bearer ...".
_HEADER = re.compile(
    r"(?P<lead>\b(?:(?:proxy-)?authorization\s*[:=]\s*(?:(?:basic|bearer|token|digest)\s+)?"
    r"|(?:x-)?api-key\s*:\s*|bearer\s+))[\w.~+/=-]+",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ModelSpec:
    """A model spec: ``scheme:target``, or a path (the scheme is then empty)."""

    text: str  # the whole spec, stripped of surrounding blanks
    scheme: str  # lower-cased
    target: str  # what follows ``scheme:``; the whole text for a path


def parse_spec(spec: str | Path) -> ModelSpec:
    """``spec`` split into its scheme and target. A ``Path`` is a path whatever it
    holds, and so is a one-letter prefix (a Windows drive, ``C:\\``)."""
    text = str(spec).strip()
    match = None if isinstance(spec, Path) else _SPEC_SCHEME.match(text)
    if match is None:
        return ModelSpec(text=text, scheme="", target=text)
    return ModelSpec(text=text, scheme=match.group(1).lower(), target=text[match.end() :])


def split_fragment_options(target: str, names: Collection[str]) -> tuple[str, dict[str, str]]:
    """``target`` before its ``#``, and the ``name=value`` options joined by ``&`` after
    it. Raises ValueError naming the first option that is not one of ``names`` with a
    value, or that is given twice."""
    where, _, fragment = target.partition("#")
    options: dict[str, str] = {}
    for item in filter(None, fragment.split("&")):
        key, sep, value = item.partition("=")
        if not sep or not value or key not in names or key in options:
            raise ValueError(item)
        options[key] = value
    return where, options


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
    return replace_url_parts(url, query=urlencode(kept), fragment=""), options


def replace_url_parts(url: str, **parts: str) -> str:
    """``url`` with some of its urlsplit parts (``netloc``, ``path``, ``query``...) replaced.

    Unlike urlunsplit, this keeps the ``//`` of an empty authority in a scheme urllib
    does not know: libpq reads ``postgresql:///db?host=h`` only with it.
    """
    split = urlsplit(url)
    joined = urlunsplit(split._replace(**parts))
    authority = f"{split.scheme}://"
    if url.lower().startswith(authority) and not joined.startswith(authority):
        joined = authority + joined.removeprefix(f"{split.scheme}:")
    return joined


def is_secret_name(name: str) -> bool:
    """Whether a query parameter or DSN keyword called ``name`` holds a secret."""
    return _SECRET_NAME.search(name.lower().replace("-", "_")) is not None


def redact(text: str, *secrets: str) -> str:
    """``text`` with nothing secret in it.

    In every URL the userinfo password and every secret-named query parameter
    are removed (so a redacted URL still names the same server, and is what an
    index may keep); elsewhere ``name=value`` pairs with a secret name (a libpq
    ``key=value`` DSN) and credentials as HTTP headers carry them are masked, as is
    every occurrence of ``secrets`` (a key the server may echo back). A text
    with nothing secret comes back unchanged.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    pieces: list[str] = []
    end = 0
    for match in _URL.finditer(text):
        pieces.append(_mask_pairs(text[end : match.start()]))
        pieces.append(_redact_url(match.group()))
        end = match.end()
    pieces.append(_mask_pairs(text[end:]))
    return "".join(pieces)


def without_userinfo(text: str) -> str:
    """``redact(text)`` with no user name in any URL either: where an endpoint's URL is
    kept, a user name (``http://TOKEN@host/``) may be a key."""
    return _URL.sub(_strip_userinfo, redact(text))


def _strip_userinfo(match: re.Match[str]) -> str:
    url = match.group()
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return _unparsed_redacted(url)
    return replace_url_parts(url, netloc=netloc.rpartition("@")[2]) if "@" in netloc else url


def _redact_url(url: str) -> str:
    try:
        return _redact_parsed(_without_hidden_userinfo(url))
    except ValueError:  # not even urlsplit reads it (a broken [IPv6] host, say)
        return _unparsed_redacted(url)


def _unparsed_redacted(url: str) -> str:
    """An unreadable URL with all before its last ``@`` masked and secret pairs hidden."""
    at = url.rfind("@")
    if at >= 0:
        url = url[: url.find("://") + 3] + MASK + url[at:]
    return _mask_pairs(url)


def _redact_parsed(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{host}" if user else host
    # Raw pieces, not re-encoded: what is kept stays exactly as it was written.
    query = "&".join(
        piece
        for piece in parts.query.split("&")
        if not is_secret_name(unquote_plus(piece.split("=", 1)[0]))
    )
    path = _mask_pairs(parts.path)  # ;password=... path parameters
    if (netloc, path, query) == (parts.netloc, parts.path, parts.query):
        return url
    return replace_url_parts(url, netloc=netloc, path=path, query=query)


def _without_hidden_userinfo(url: str) -> str:
    """``url`` with a userinfo that urlsplit cannot see masked whole: a password holding
    an unencoded ``/``, ``?`` or ``#`` (``http://user:pa/ss@host/``) ends the authority
    early, and the rest of the password would pass for a path or a query."""
    start = url.find("://") + 3
    authority = _AUTHORITY_END.split(url[start:], maxsplit=1)[0]
    at = url.rfind("@")
    if at < start or "@" in authority or _PLAIN_HOST.fullmatch(authority):
        return url
    return url[:start] + MASK + url[at:]


def _mask_pairs(text: str) -> str:
    text = _PAIR.sub(
        lambda m: m.group() if not is_secret_name(m["name"]) else m["name"] + m["eq"] + MASK,
        text,
    )
    return _HEADER.sub(lambda m: m["lead"] + MASK, text)
