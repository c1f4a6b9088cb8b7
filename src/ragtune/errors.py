"""The exceptions ragtune raises. Every one carries a one-line, user-facing message.

Every public exception is defined here, under :class:`RagtuneError`, so a caller
catches one family and the CLI prints any of them the same way. Code decides on
an error's type and attributes (``FetchError.kind`` and ``status``), never on
its message, which may be reworded at any time.
"""

from __future__ import annotations

import errno
import re
from typing import Any, Literal

from ragtune.url_options import redact

FetchErrorKind = Literal[
    "invalid_url",  # not a URL ragtune fetches: scheme, host, length, credentials
    "http_status",  # the server answered with an error status (``status`` says which)
    "timeout",  # no complete response in time
    "connection",  # refused, reset or dropped connection, unknown host, other transport failure
    "redirect",  # a redirect to something that is no valid http(s) URL, or too many of them
    "redirect_refused",  # a redirect the caller would not follow (out of scope, robots.txt)
    "too_large",  # the body is over the byte cap (or a sitemap was cut there)
    "unsupported_content",  # a content type ragtune does not read
    "undecodable",  # the body's content encoding is broken
    "robots",  # robots.txt keeps the crawl away: disallowed, or the host too slow
    "address_refused",  # the host is (or resolves to) an address the fetch may not reach
]


class RagtuneError(Exception):
    """Base class: the CLI prints str(error) on one line and exits non-zero."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its message and attributes, not by calling its constructor again:
        # subclasses take other arguments than the message (a fetch shard on a Ray
        # worker sends its FetchErrors to the crawl).
        return _rebuild_error, (type(self), self.args, self.__dict__)


class FetchError(RagtuneError):
    """A URL could not be fetched. ``kind`` says how it failed; ``status`` is the HTTP
    status when the server answered with an error (``kind == "http_status"``), even
    after retries."""

    def __init__(
        self, url: str, reason: str, *, kind: FetchErrorKind, status: int | None = None
    ) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.kind: FetchErrorKind = kind
        self.status = status


class ResponseTimeout(FetchError):
    """The server did not send a whole response in time (after any retries)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason, kind="timeout")


class UnsupportedContentError(FetchError):
    """The response is not a kind of document ragtune can read."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason, kind="unsupported_content")


class RedirectRefused(FetchError):
    """A redirect that the fetch's ``check_redirect`` would not follow."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason, kind="redirect_refused")


class AddressRefused(FetchError):
    """The URL's host is, or resolves to, an address the fetch may not connect to
    (loopback, private, link-local, ...; see ``ragtune.net.address_guard``)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason, kind="address_refused")


class ExtractionError(RagtuneError):
    """A document was fetched but yielded no usable text."""


class IndexNotFoundError(RagtuneError):
    """The index directory does not exist."""


class InvalidIndexError(RagtuneError):
    """The directory is not a ragtune index (or cannot be made one), or is damaged."""


class InvalidQueryError(RagtuneError):
    """The question is empty or otherwise unusable."""


class ModelNotFoundError(RagtuneError):
    """A model file or directory is missing or cannot be loaded."""


class LLMError(RagtuneError):
    """The language model failed to produce an answer."""


class LLMConfigError(LLMError):
    """An LLM spec or argument is malformed."""


class LLMEndpointError(LLMError):
    """An OpenAI-compatible LLM endpoint failed; the message names it and says how, on
    one line. ``status`` is the HTTP status when it answered with an error."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        super().__init__(redact(f"LLM endpoint {url}: {reason}"))
        self.url = redact(url)
        self.reason = redact(reason)
        self.status = status


class EmbedderConfigError(RagtuneError):
    """An embedder spec, backend name or option is not usable."""


class EmbeddingServiceError(RagtuneError):
    """The embeddings endpoint failed; the message names it and says how, on one line."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(redact(f"embedding endpoint {url}: {reason}"))
        self.url = redact(url)
        self.reason = redact(reason)


class EmbeddingConnectionError(EmbeddingServiceError):
    """Nothing answers at the address (refused, unknown host, reset)."""


class EmbeddingTimeoutError(EmbeddingServiceError):
    """The endpoint did not answer in time."""


class EmbeddingHTTPError(EmbeddingServiceError):
    """The endpoint answered with an HTTP error status."""

    def __init__(self, url: str, status: int, reason: str) -> None:
        super().__init__(url, reason)
        self.status = status


class EmbeddingResponseError(EmbeddingServiceError):
    """The answer is not what the protocol promises: malformed JSON, wrong count or dimensions."""


class StoreConnectionError(RagtuneError):
    """The index's store (a PostgreSQL server) cannot be reached or used."""


class QAFormatError(RagtuneError):
    """A question-answer file is not SQuAD v1.1 JSON."""


class DatasetError(RagtuneError):
    """A training dataset is missing, empty, or has a record that does not fit its format."""


class TrainingError(RagtuneError):
    """Fine-tuning, merging or exporting a model failed (bad settings, full disk, ...)."""


class EstimateError(RagtuneError):
    """A cost estimate cannot be made: an unknown route or hardware profile, bad numbers."""


def one_line(error: BaseException, limit: int = 300) -> str:
    """A third-party error's message folded onto one line, for our one-line errors."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Whole terminal escape sequences (Ray colours its task names), so a message reads
# "ray::Task", not "[36mray::Task"; the consoles (ragtune.terminal) drop control
# characters from whatever they print in any case.
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b")


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of a third-party error's message (the rest is usually a trace),
    without terminal escape sequences."""
    text = _ESCAPES.sub("", str(error)).strip()
    return (text.splitlines() or [type(error).__name__])[0][:limit]


def is_disk_full(error: BaseException) -> bool:
    """Whether a failed write ran out of space. torch, safetensors and tokenizers raise
    their own exception types for it and say so only in the message."""
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(error)
    return "os error 28" in text or "No space left" in text


def _rebuild_error(
    kind: type[RagtuneError], args: tuple[Any, ...], state: dict[str, Any]
) -> RagtuneError:
    error = kind.__new__(kind)
    error.args = args
    error.__dict__.update(state)
    return error
