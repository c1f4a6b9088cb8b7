"""Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint.

Works with OpenAI itself and with local servers that speak the same protocol
(llama.cpp's llama-server, vLLM, Ollama, text-embeddings-inference, LM Studio).

Chunk sizing needs a tokenizer before any request is made, and remote servers
do not expose theirs, so word pieces are counted with a *local* tokenizer:
MiniLM's by default, or any ``tokenizer.json`` (or a directory holding one)
given as ``tokenizer=``. ``max_tokens`` defaults to that local model's window
(256 for MiniLM), which keeps chunks well inside any remote model's window;
raise it for a remote model known to read more.

The API key is read from ``$RAGTUNE_EMBED_API_KEY`` or else ``$OPENAI_API_KEY``
at each request and never stored on the object, written into its spec or shown
(an error that quotes it, from a server that echoes it, shows ``***``). A URL
that may carry a secret itself (``http://user:password@...``, even a bare user
name, ``?api_key=``, ``?token=``) is refused: the index keeps its embedder's URL,
and every later command reopens it, so the key must come from the environment.

``timeout`` bounds each request's whole response, not only each read: a server
that drips its answer cannot hold an ingest. Keys, retries, deadlines and error
messages are those of every OpenAI-compatible endpoint
(:mod:`ragtune.net.openai_client`); this module shapes the requests and reads the
vectors.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import numpy as np

from ragtune.assets import DEFAULT_EMBEDDER
from ragtune.errors import (
    EmbedderConfigError,
    EmbeddingConnectionError,
    EmbeddingHTTPError,
    EmbeddingResponseError,
    EmbeddingTimeoutError,
)
from ragtune.index.embedding.base import TextEmbedder, load_counting_tokenizer, normalise
from ragtune.net.openai_client import EndpointErrors, OpenAIClient
from ragtune.url_options import redact, split_url_options, without_userinfo

if TYPE_CHECKING:
    from tokenizers import Tokenizer

API_KEY_VARS = ("RAGTUNE_EMBED_API_KEY", "OPENAI_API_KEY")
_ERRORS = EndpointErrors(
    connection=EmbeddingConnectionError,
    timeout=EmbeddingTimeoutError,
    status=lambda url, reason, status: EmbeddingHTTPError(url, status, reason),
    answer=EmbeddingResponseError,
)


class OpenAIEmbedder(TextEmbedder):
    """An OpenAI-compatible embeddings endpoint with the local embedder's surface."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        tokenizer: str | Path | None = None,
        max_tokens: int | None = None,
        dimensions: int | None = None,
        batch_size: int = 64,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        shown = without_userinfo(base_url)
        if not base_url.startswith(("http://", "https://")):
            raise EmbedderConfigError(f"embedding endpoint {shown!r} is not an http(s) URL")
        if shown != base_url:
            raise EmbedderConfigError(
                f"embedding endpoint {shown}: the URL holds a user name, password or key, and "
                "an index keeps its embedder's URL; give the key in $RAGTUNE_EMBED_API_KEY or "
                "$OPENAI_API_KEY instead"
            )
        if not model:
            raise EmbedderConfigError(f"embedding endpoint {base_url}: no model name given")
        if batch_size < 1 or timeout <= 0 or retries < 0 or backoff < 0:
            raise EmbedderConfigError(
                f"embedding endpoint {base_url}: batch_size, timeout, retries or backoff "
                "out of range"
            )
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/embeddings"
        self.model = model
        self.tokenizer_path = _tokenizer_file(tokenizer)
        self._tokenizer_given = tokenizer is not None
        self._max_tokens = max_tokens
        self._dimensions = dimensions
        self.batch_size = batch_size
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    @classmethod
    def from_spec(cls, spec: str) -> OpenAIEmbedder:
        """``openai:http://127.0.0.1:8000/v1?model=NAME`` (the ``openai:`` prefix is optional).

        Options in the query: ``model`` (required), ``tokenizer``, ``max_tokens``,
        ``dimensions``, ``batch_size``, ``timeout``, ``retries``; any other
        parameter stays in the URL.
        """
        url = spec.removeprefix("openai:")
        base, options = split_url_options(url, _SPEC_OPTIONS)
        try:
            return cls(
                base,
                options.get("model", ""),
                tokenizer=options.get("tokenizer") or None,
                max_tokens=_int_option(options, "max_tokens"),
                dimensions=_int_option(options, "dimensions"),
                batch_size=_int_option(options, "batch_size") or 64,
                timeout=float(options.get("timeout") or 60.0),
                retries=int(options.get("retries") or 3),
            )
        except ValueError:
            raise EmbedderConfigError(
                f"embedding spec {redact(spec)!r} has a malformed option"
            ) from None

    @property
    def spec(self) -> str:
        query: dict[str, str | int] = {"model": self.model}
        if self._tokenizer_given:
            query["tokenizer"] = str(self.tokenizer_path)
        if self._max_tokens is not None:
            query["max_tokens"] = self._max_tokens
        return f"openai:{self.base_url}?{urlencode(query)}"

    @property
    def name(self) -> str:
        return self.model

    @property
    def backend(self) -> str:
        return "openai"

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return load_counting_tokenizer(str(self.tokenizer_path))

    @cached_property
    def max_tokens(self) -> int:
        if self._max_tokens is not None:
            return self._max_tokens
        config_file = self.tokenizer_path.parent / "sentence_bert_config.json"
        if config_file.exists():
            return int(json.loads(config_file.read_text()).get("max_seq_length", 256))
        return 256

    @cached_property
    def dimensions(self) -> int:
        """Given, or found by one probe request."""
        if self._dimensions is None:
            self._dimensions = int(self._request(["dimension probe"]).shape[1])
        return self._dimensions

    @cached_property
    def _http(self) -> OpenAIClient:
        return OpenAIClient(
            key_vars=API_KEY_VARS,
            errors=_ERRORS,
            timeout=self.timeout,
            retries=self.retries,
            backoff=self.backoff,
        )

    def close(self) -> None:
        self._http.close()

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        parts = [
            self._request(texts[start : start + self.batch_size])
            for start in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(parts)

    def _request(self, texts: list[str]) -> np.ndarray:
        payload = {"model": self.model, "input": texts, "encoding_format": "float"}
        return self._vectors(self._http.post_json(self.url, payload), len(texts))

    def _vectors(self, body: Any, expected: int) -> np.ndarray:
        """Unit-length rows from an embeddings answer, in the order of the inputs."""
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise EmbeddingResponseError(self.url, 'the answer has no "data" list')
        if len(data) != expected:
            raise EmbeddingResponseError(
                self.url, f"{len(data)} vectors returned for {expected} texts"
            )
        rows: list[tuple[int, list[Any]]] = []
        for position, item in enumerate(data):
            vector = item.get("embedding") if isinstance(item, dict) else None
            index = item.get("index", position) if isinstance(item, dict) else position
            if not isinstance(vector, list) or not isinstance(index, int):
                raise EmbeddingResponseError(
                    self.url, f'item {position} has no "embedding" list of numbers'
                )
            rows.append((index, vector))
        rows.sort(key=lambda row: row[0])
        if [index for index, _ in rows] != list(range(expected)):
            raise EmbeddingResponseError(self.url, "the vectors' indexes do not match the inputs")
        sizes = sorted({len(vector) for _, vector in rows})
        if len(sizes) > 1:
            raise EmbeddingResponseError(
                self.url, f"vectors of inconsistent dimensions {sizes[0]} and {sizes[-1]}"
            )
        if self._dimensions is not None and sizes[0] != self._dimensions:
            raise EmbeddingResponseError(
                self.url, f"{sizes[0]}-dimensional vectors, expected {self._dimensions}"
            )
        if sizes[0] == 0:
            raise EmbeddingResponseError(self.url, "empty vectors returned")
        try:
            matrix = np.asarray([vector for _, vector in rows], dtype=np.float32)
        except (TypeError, ValueError):
            raise EmbeddingResponseError(
                self.url, "the vectors hold values that are not numbers"
            ) from None
        if not np.isfinite(matrix).all():
            raise EmbeddingResponseError(self.url, "the vectors hold NaN or infinite values")
        return normalise(matrix)

    def __repr__(self) -> str:
        return f"OpenAIEmbedder({self.base_url!r}, model={self.model!r})"


_SPEC_OPTIONS = frozenset(
    {"model", "tokenizer", "max_tokens", "dimensions", "batch_size", "timeout", "retries"}
)


def _int_option(options: dict[str, str], key: str) -> int | None:
    value = options.get(key)
    return int(value) if value else None


def _tokenizer_file(tokenizer: str | Path | None) -> Path:
    path = Path(tokenizer) if tokenizer is not None else DEFAULT_EMBEDDER.require()
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise EmbedderConfigError(f"tokenizer {path} does not exist (give a tokenizer.json)")
    return path
