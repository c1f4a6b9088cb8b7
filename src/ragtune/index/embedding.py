"""Sentence embeddings with a local sentence-transformers model, CPU-friendly."""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ragtune.assets import DEFAULT_EMBEDDER
from ragtune.errors import ModelNotFoundError
from ragtune.runtime import configure_torch_threads

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer


class Embedder:
    """Embeds text with a sentence-transformers directory (MiniLM by default).

    The tokenizer loads at once (cheap, needed for chunking); the network
    weights load on the first ``embed`` call.
    """

    def __init__(self, model_path: str | Path | None = None, batch_size: int = 32) -> None:
        self.model_path = Path(model_path) if model_path else DEFAULT_EMBEDDER.require()
        if not (self.model_path / "config.json").exists():
            raise ModelNotFoundError(
                f"{self.model_path} is not a sentence-transformers model directory"
            )
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        return (
            self.model_path.name if self.model_path.name != "model" else self.model_path.parent.name
        )

    @cached_property
    def max_tokens(self) -> int:
        """Word pieces the model reads, special tokens included; the rest is cut off."""
        config_file = self.model_path / "sentence_bert_config.json"
        if config_file.exists():
            return int(json.loads(config_file.read_text()).get("max_seq_length", 256))
        return 256

    @cached_property
    def dimensions(self) -> int:
        config = json.loads((self.model_path / "config.json").read_text())
        return int(config.get("hidden_size", 384))

    @cached_property
    def tokenizer(self) -> Tokenizer:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.model_path / "tokenizer.json"))
        # The shipped tokenizer.json pads and truncates to 128; counting needs neither.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return tokenizer

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    @cached_property
    def model(self) -> SentenceTransformer:
        configure_torch_threads()
        # Local directories only: never let a missing file turn into a hub download.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()  # ragtune shows its own progress

        try:
            return SentenceTransformer(str(self.model_path), device="cpu", local_files_only=True)
        except (OSError, ValueError) as error:
            raise ModelNotFoundError(f"cannot load embedder {self.model_path}: {error}") from None

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]
