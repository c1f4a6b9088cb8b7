"""Text embedders: a local sentence-transformers directory (int8 ONNX by default where the
onnx extra is installed, else PyTorch; or plain ONNX) or an OpenAI-compatible endpoint,
all behind one surface and one factory.

    make_embedder(None)                                   # bundled MiniLM
    make_embedder("/models/bge-small", backend="torch")
    make_embedder("openai:http://127.0.0.1:8000/v1?model=nomic-embed-text")
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragtune.errors import EmbedderConfigError
from ragtune.index.embedding.base import TextEmbedder
from ragtune.index.embedding.local import BACKENDS, DEFAULT_BACKEND, Embedder, resolve_backend
from ragtune.url_options import ModelSpec, parse_spec, redact

if TYPE_CHECKING:
    from ragtune.index.embedding.remote import OpenAIEmbedder

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "EMBEDDER_FACTORIES",
    "Embedder",
    "OpenAIEmbedder",
    "TextEmbedder",
    "is_remote_spec",
    "make_embedder",
]

EMBEDDER_SPEC_HELP = (
    "a sentence-transformers model directory (backend torch, onnx or onnx-int8), or "
    "openai:http://HOST:PORT/v1?model=NAME (or a plain http(s) URL) for an "
    "OpenAI-compatible endpoint"
)


def _local(spec: ModelSpec, backend: str | None) -> TextEmbedder:
    return Embedder(spec.text or None, backend=resolve_backend(backend))


def _remote(spec: ModelSpec, backend: str | None) -> TextEmbedder:
    from ragtune.index.embedding.remote import OpenAIEmbedder

    if backend and backend != "openai":
        raise EmbedderConfigError(
            f"backend {backend!r} applies to local models, not to the endpoint {redact(spec.text)}"
        )
    return OpenAIEmbedder.from_spec(spec.text)


# The empty scheme is a path (none at all: the bundled MiniLM).
EMBEDDER_FACTORIES: dict[str, Callable[[ModelSpec, str | None], TextEmbedder]] = {
    "": _local,
    "openai": _remote,
    "http": _remote,
    "https": _remote,
}


def __getattr__(name: str) -> Any:
    # The endpoint client (httpx and the retry stack) loads when an endpoint is used,
    # not in every command that embeds locally.
    if name == "OpenAIEmbedder":
        from ragtune.index.embedding.remote import OpenAIEmbedder

        return OpenAIEmbedder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_remote_spec(spec: str | Path | None) -> bool:
    """Whether ``spec`` names an endpoint rather than a model on this machine."""
    return isinstance(spec, str) and EMBEDDER_FACTORIES.get(parse_spec(spec).scheme) is _remote


def make_embedder(
    spec: str | Path | TextEmbedder | None, backend: str | None = None
) -> TextEmbedder:
    """The embedder a spec names.

    ``None`` or ``""``: the bundled MiniLM. A path: that sentence-transformers
    directory. ``openai:URL?model=NAME`` or ``http(s)://URL?model=NAME``: an
    OpenAI-compatible endpoint (see :class:`OpenAIEmbedder` for the options).
    ``backend`` ("torch", "onnx", "onnx-int8"; default $RAGTUNE_EMBED_BACKEND,
    else ``DEFAULT_BACKEND``) applies to local models only. An embedder is
    returned as is.
    """
    if isinstance(spec, TextEmbedder):
        if backend and backend != spec.backend:
            raise EmbedderConfigError(
                f"embedder {spec.name} runs on {spec.backend}, not the requested {backend}"
            )
        return spec
    parsed = parse_spec(spec or "")
    factory = EMBEDDER_FACTORIES.get(parsed.scheme)
    if factory is None:
        raise EmbedderConfigError(
            f"unknown embedder spec {redact(parsed.text)!r}; expected {EMBEDDER_SPEC_HELP}"
        )
    return factory(parsed, backend)
