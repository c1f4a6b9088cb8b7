"""The exceptions ragtune raises. Every one carries a one-line, user-facing message."""

from __future__ import annotations

import errno


class RagtuneError(Exception):
    """Base class: the CLI prints str(error) on one line and exits non-zero."""


class FetchError(RagtuneError):
    """A URL could not be fetched: unreachable host, HTTP error, timeout. ``status`` is
    the HTTP status when the server answered with an error."""

    def __init__(self, url: str, reason: str, *, status: int | None = None) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.status = status


class ResponseTimeout(FetchError):
    """The server did not send a whole response in time (after any retries)."""


class UnsupportedContentError(FetchError):
    """The response is not a kind of document ragtune can read."""


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


class StoreConnectionError(RagtuneError):
    """The index's store (a PostgreSQL server) cannot be reached or used."""


class DatasetError(RagtuneError):
    """A training dataset is missing, empty, or has a record that does not fit its format."""


class TrainingError(RagtuneError):
    """Fine-tuning, merging or exporting a model failed (bad settings, full disk, ...)."""


def one_line(error: BaseException, limit: int = 300) -> str:
    """A third-party error's message folded onto one line, for our one-line errors."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of a third-party error's message (the rest is usually a trace)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:limit]


def is_disk_full(error: BaseException) -> bool:
    """Whether a failed write ran out of space. torch, safetensors and tokenizers raise
    their own exception types for it and say so only in the message."""
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(error)
    return "os error 28" in text or "No space left" in text
