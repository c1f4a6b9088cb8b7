"""The exceptions ragtune raises. Every one carries a one-line, user-facing message."""

from __future__ import annotations


class RagtuneError(Exception):
    """Base class: the CLI prints str(error) on one line and exits non-zero."""


class FetchError(RagtuneError):
    """A URL could not be fetched: unreachable host, HTTP error, timeout."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class UnsupportedContentError(FetchError):
    """The response is not a kind of document ragtune can read."""


class ExtractionError(RagtuneError):
    """A document was fetched but yielded no usable text."""


class IndexNotFoundError(RagtuneError):
    """The index directory does not exist."""


class InvalidIndexError(RagtuneError):
    """The directory exists but is not a ragtune index, or is damaged."""


class InvalidQueryError(RagtuneError):
    """The question is empty or otherwise unusable."""


class ModelNotFoundError(RagtuneError):
    """A model file or directory is missing or cannot be loaded."""


class LLMError(RagtuneError):
    """The language model failed to produce an answer."""


class StoreConnectionError(RagtuneError):
    """The index's store (a PostgreSQL server) cannot be reached or used."""
