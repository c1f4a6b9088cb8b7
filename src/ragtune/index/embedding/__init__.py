"""Text embedders: a local sentence-transformers directory (PyTorch, ONNX or int8 ONNX)
or an OpenAI-compatible endpoint, all behind one surface and one factory.

    make_embedder(None)                                   # bundled MiniLM, PyTorch
    make_embedder("/models/bge-small", backend="onnx-int8")
    make_embedder("openai:http://127.0.0.1:8000/v1?model=nomic-embed-text")
"""

from __future__ import annotations

from pathlib import Path

from ragtune.index.embedding.base import EmbedderConfigError, TextEmbedder
from ragtune.index.embedding.local import BACKENDS, DEFAULT_BACKEND, Embedder, resolve_backend
from ragtune.index.embedding.remote import (
    EmbeddingConnectionError,
    EmbeddingHTTPError,
    EmbeddingResponseError,
    EmbeddingServiceError,
    EmbeddingTimeoutError,
    OpenAIEmbedder,
)
from ragtune.url_options import redact

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "Embedder",
    "EmbedderConfigError",
    "EmbeddingConnectionError",
    "EmbeddingHTTPError",
    "EmbeddingResponseError",
    "EmbeddingServiceError",
    "EmbeddingTimeoutError",
    "OpenAIEmbedder",
    "TextEmbedder",
    "is_remote_spec",
    "make_embedder",
]


def is_remote_spec(spec: str | Path | None) -> bool:
    return isinstance(spec, str) and spec.startswith(("openai:", "http://", "https://"))


def make_embedder(
    spec: str | Path | TextEmbedder | None, backend: str | None = None
) -> TextEmbedder:
    """The embedder a spec names.

    ``None`` or ``""``: the bundled MiniLM. A path: that sentence-transformers
    directory. ``openai:URL?model=NAME`` or ``http(s)://URL?model=NAME``: an
    OpenAI-compatible endpoint (see :class:`OpenAIEmbedder` for the options).
    ``backend`` ("torch", "onnx", "onnx-int8"; default $RAGTUNE_EMBED_BACKEND,
    else "torch") applies to local models only. An embedder is returned as is.
    """
    if isinstance(spec, TextEmbedder):
        if backend and backend != spec.backend:
            raise EmbedderConfigError(
                f"embedder {spec.name} runs on {spec.backend}, not the requested {backend}"
            )
        return spec
    if is_remote_spec(spec):
        if backend and backend != "openai":
            raise EmbedderConfigError(
                f"backend {backend!r} applies to local models, not to the endpoint "
                f"{redact(str(spec))}"
            )
        return OpenAIEmbedder.from_spec(str(spec))
    return Embedder(spec or None, backend=resolve_backend(backend))
