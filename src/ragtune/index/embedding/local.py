"""Sentence embeddings with a local sentence-transformers directory, CPU-friendly."""

from __future__ import annotations

import os
from functools import cached_property
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ragtune.assets import DEFAULT_EMBEDDER
from ragtune.errors import EmbedderConfigError, ModelNotFoundError, first_line
from ragtune.index.embedding.base import (
    TextEmbedder,
    load_counting_tokenizer,
    read_model_json,
)
from ragtune.runtime import configure_torch_threads, torch_threads

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from ragtune.index.embedding.onnx_backend import OnnxEncoder

# torch: sentence-transformers in PyTorch fp32, the reference.
# onnx: the same network exported to ONNX, run by ONNX Runtime (same vectors to 1e-5).
# onnx-int8: that graph with dynamically quantized int8 weights (cosine 0.99 to fp32).
BACKENDS = ("torch", "onnx", "onnx-int8")
# int8 ONNX embeds about 3x faster than PyTorch on CPU with the same XQuAD
# recall@5 (bench/embedding_backends.py); PyTorch is the fallback where the
# onnx extra is not installed.
ONNX_BATCH_SIZE = 1
DEFAULT_BACKEND = "onnx-int8" if find_spec("onnxruntime") and find_spec("onnx") else "torch"
# Pickles, which can run code when loaded: an embedder's weights load from safetensors only.
PICKLED_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def resolve_backend(backend: str | None) -> str:
    """The backend asked for, else $RAGTUNE_EMBED_BACKEND, else the default."""
    chosen = (backend or os.environ.get("RAGTUNE_EMBED_BACKEND") or DEFAULT_BACKEND).strip().lower()
    if chosen not in BACKENDS:
        raise EmbedderConfigError(
            f"unknown embedding backend {chosen!r}; choose one of {', '.join(BACKENDS)}"
        )
    return chosen


class Embedder(TextEmbedder):
    """Embeds text with a sentence-transformers directory (MiniLM by default).

    The tokenizer loads at once (cheap, needed for chunking); the network
    weights load on the first ``embed`` call. The ``onnx`` backends export the
    model once into a cache (see ``onnx_backend``) and need the ``onnx`` extra.
    ``threads`` sets ONNX Runtime's threads (default: RAGTUNE_TORCH_THREADS, 1);
    PyTorch's are process-wide and set by ``configure_torch_threads``.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        batch_size: int = 32,
        backend: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path else DEFAULT_EMBEDDER.require()
        if not (self.model_path / "config.json").exists():
            raise ModelNotFoundError(
                f"{self.model_path} is not a sentence-transformers model directory"
            )
        check_embedder_weights(self.model_path)
        self.batch_size = batch_size
        self._backend = resolve_backend(backend)
        self.threads = threads

    @property
    def backend(self) -> str:
        return self._backend

    @property
    def name(self) -> str:
        return (
            self.model_path.name if self.model_path.name != "model" else self.model_path.parent.name
        )

    @property
    def spec(self) -> str:
        return str(self.model_path)

    @cached_property
    def max_tokens(self) -> int:
        """Word pieces the model reads, special tokens included; the rest is cut off."""
        config_file = self.model_path / "sentence_bert_config.json"
        if config_file.exists():
            return _whole_number(config_file, "max_seq_length", 256)
        return 256

    @cached_property
    def dimensions(self) -> int:
        return _whole_number(self.model_path / "config.json", "hidden_size", 384)

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return load_counting_tokenizer(str(self.model_path / "tokenizer.json"))

    @cached_property
    def model(self) -> SentenceTransformer:
        """The PyTorch model (backend "torch")."""
        configure_torch_threads()
        # Local directories only: never let a missing file turn into a hub download.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()  # ragtune shows its own progress

        try:
            return SentenceTransformer(
                str(self.model_path),
                device="cpu",
                local_files_only=True,
                trust_remote_code=False,
                model_kwargs={"use_safetensors": True},
            )
        except Exception as error:  # sentence-transformers, transformers and torch: many types
            raise ModelNotFoundError(
                f"cannot load embedder {self.model_path}: {first_line(error)}"
            ) from None

    @cached_property
    def onnx_encoder(self) -> OnnxEncoder:
        """The ONNX Runtime session (backends "onnx" and "onnx-int8"), exported on first use."""
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ModelNotFoundError(
                f"the {self.backend} embedding backend needs ONNX Runtime: "
                "pip install 'ragtune[onnx]'"
            ) from None
        from ragtune.index.embedding.onnx_backend import OnnxEncoder, SentenceModelLayout

        layout = SentenceModelLayout.read(self.model_path, self.max_tokens)
        variant = "int8" if self.backend == "onnx-int8" else "fp32"
        return OnnxEncoder(layout, self.name, variant, self.threads or torch_threads())

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        if self.backend != "torch":
            # One text per run: int8's activation scales are computed per run, so a
            # batch would make a text's vector depend on its neighbours (cosine down
            # to 0.987); unpadded single runs are also faster on CPU (55 vs 37
            # XQuAD paragraphs/s at batch 32, measured here).
            return self.onnx_encoder.encode(texts, ONNX_BATCH_SIZE)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def __repr__(self) -> str:
        return f"Embedder({str(self.model_path)!r}, backend={self.backend!r})"


def _whole_number(config_file: Path, key: str, default: int) -> int:
    config = read_model_json(config_file)
    value = config.get(key, default) if isinstance(config, dict) else None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ModelNotFoundError(f"{config_file}: {key} is not a positive whole number")
    return value


def check_embedder_weights(model_path: Path) -> None:
    """Refuse a model directory unless its weights are safetensors, before anything loads.

    Every folder counts: a sentence-transformers module (a Dense layer) keeps weights of
    its own, and falls back to a pickled ``pytorch_model.bin`` as transformers does.
    """
    has_safetensors = False
    for folder, _, names in os.walk(model_path):
        safe = any(
            name in ("model.safetensors", "model.safetensors.index.json")
            or (name.startswith("model-") and name.endswith(".safetensors"))
            for name in names
        )
        pickled = [name for name in PICKLED_WEIGHT_FILES if name in names]
        if pickled and not safe:
            where = Path(folder, pickled[0]).relative_to(model_path)
            raise ModelNotFoundError(
                f"embedder {model_path} has its weights in {where}, a pickle that can run code "
                "when loaded; ragtune reads safetensors only: convert them to model.safetensors"
            )
        has_safetensors = has_safetensors or safe
    if not has_safetensors:
        raise ModelNotFoundError(f"embedder {model_path} has no weights (model.safetensors)")
