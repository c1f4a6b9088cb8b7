"""What every embedder offers the index: vectors of unit length and a token counter."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragtune.errors import ModelNotFoundError, first_line, one_line

if TYPE_CHECKING:
    from tokenizers import Tokenizer


class TextEmbedder(ABC):
    """The surface the index, the chunker and the CLI rely on.

    ``spec`` round-trips through :func:`ragtune.index.embedding.make_embedder`
    (together with ``backend`` for local models), so an index can record it and
    rebuild the same embedder when it is loaded again.
    """

    batch_size: int

    @property
    @abstractmethod
    def name(self) -> str: ...

    @property
    @abstractmethod
    def spec(self) -> str: ...

    @property
    @abstractmethod
    def backend(self) -> str: ...

    @property
    @abstractmethod
    def max_tokens(self) -> int:
        """Word pieces the model reads, special tokens included; the rest is cut off."""

    @property
    @abstractmethod
    def dimensions(self) -> int: ...

    @property
    @abstractmethod
    def tokenizer(self) -> Tokenizer: ...

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    @abstractmethod
    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (an all-zero row stays zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


def load_counting_tokenizer(path: str) -> Tokenizer:
    """A tokenizer.json that neither pads nor truncates, for counting word pieces."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(path)
    except Exception as error:  # tokenizers raises a bare Exception for a malformed file
        raise ModelNotFoundError(f"cannot read the tokenizer {path}: {first_line(error)}") from None
    # Shipped tokenizer.json files often pad and truncate (MiniLM's to 128); counting needs neither.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def read_model_json(path: Path) -> Any:
    """One of a model directory's JSON files, parsed; anything else is one line."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:  # the parser recurses once per level of nesting
        reason = "nested too deeply"
    except (OSError, ValueError) as error:
        reason = one_line(error)
    raise ModelNotFoundError(f"cannot read {path}: {reason}")
