"""A GGUF model's own tokenizer, rebuilt from the file's metadata to count tokens in-process.

llama.cpp's in-process server tokenizes only over loopback HTTP, about 30 ms a text
(measured on SmolLM2, 2 vCPUs); this tokenizer counts the same text in about 0.1 ms.
The metadata is read here, not through the ``gguf`` package or transformers (each
takes seconds to parse a file and is an optional dependency): only the key-value
section at the start of the file, about 2 MB for SmolLM2's 49k-token vocabulary.

A count must equal llama.cpp's own, so a tokenizer is rebuilt only for the kinds
reproduced exactly (``PRE_TOKENIZERS``, proved by tests/test_gguf_tokenizer.py on many
languages); for any other the caller falls back to llama.cpp.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

GGUF_MAGIC = b"GGUF"
# llama.cpp's token types (llama_token_type): these are matched whole, before BPE, as
# llama.cpp's /tokenize does (it parses special tokens).
_SPECIAL_TOKEN_TYPES = frozenset({2, 3, 4})  # unknown, control, user-defined

# Pre-tokenizers by ``tokenizer.ggml.pre``, each llama.cpp's regular expressions for
# that type (llama-vocab.cpp) in Hugging Face tokenizers' terms. Add a type only with
# a test that counts texts both ways.
PRE_TOKENIZERS: dict[str, Callable[[], pre_tokenizers.PreTokenizer]] = {
    # "\p{N}" first (each digit its own word), then GPT-2's expression.
    "smollm": lambda: pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    ),
}

# GGUF value types: struct formats of the fixed-size ones; 8 is a string, 9 an array.
_SCALARS = {
    0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d",
}  # fmt: skip
_STRING, _ARRAY = 8, 9


def gguf_tokenizer(path: Path) -> Tokenizer | None:
    """The tokenizer of the GGUF model at ``path``, or None where this module cannot
    reproduce llama.cpp's: not a byte-level BPE, a pre-tokenizer not in the table, or
    metadata it cannot read (llama.cpp, loading the file, says what is wrong with it)."""
    try:
        metadata = read_gguf_metadata(path, prefix="tokenizer.ggml.")
    except ValueError:
        return None
    pre_tokenizer = PRE_TOKENIZERS.get(str(metadata.get("tokenizer.ggml.pre", "")))
    if metadata.get("tokenizer.ggml.model") != "gpt2" or pre_tokenizer is None:
        return None
    tokens: list[str] = metadata["tokenizer.ggml.tokens"]
    merges = [tuple(merge.split(" ", 1)) for merge in metadata["tokenizer.ggml.merges"]]
    tokenizer = Tokenizer(
        models.BPE({token: id_ for id_, token in enumerate(tokens)}, merges)  # type: ignore[arg-type]
    )
    tokenizer.pre_tokenizer = pre_tokenizer()
    types = metadata.get("tokenizer.ggml.token_type", [])
    tokenizer.add_special_tokens(
        [
            AddedToken(token, special=True, normalized=False)
            for token, kind in zip(tokens, types, strict=False)
            if kind in _SPECIAL_TOKEN_TYPES
        ]
    )
    return tokenizer


def read_gguf_metadata(path: Path, prefix: str = "") -> dict[str, Any]:
    """The key-value metadata of a GGUF file (version 2 or 3) whose keys start with
    ``prefix``; the others are read past. Arrays come back as lists. Raises ValueError
    for a file that is not one, or is damaged or cut short."""
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:4] != GGUF_MAGIC:
            raise ValueError(f"{path} is not a GGUF file")
        try:
            version, _tensors, count = struct.unpack_from("<IQQ", data, 4)
            if version < 2:
                raise ValueError(f"{path}: GGUF version {version} is not read here")
            reader = _Reader(data, 24)
            metadata: dict[str, Any] = {}
            for _ in range(count):
                key = reader.string()
                value = reader.value(reader.scalar("I"), keep=key.startswith(prefix))
                if key.startswith(prefix):
                    metadata[key] = value
        except (struct.error, KeyError) as error:  # a length or type that runs off the file
            raise ValueError(f"{path}: unreadable GGUF metadata ({error!r})") from None
        return metadata


class _Reader:
    """Little-endian GGUF values read one after another from ``data``."""

    def __init__(self, data: mmap.mmap, offset: int) -> None:
        self.data = data
        self.offset = offset

    def scalar(self, fmt: str) -> Any:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        length = self.scalar("Q")
        start, self.offset = self.offset, self.offset + length
        return self.data[start : self.offset].decode("utf-8")

    def value(self, kind: int, keep: bool = True) -> Any:
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            return self.scalar(_SCALARS[kind])
        item_kind, length = self.scalar("I"), self.scalar("Q")
        if item_kind in _SCALARS:  # read in one step, or stepped over
            fmt = f"<{length}{_SCALARS[item_kind]}"
            items = list(struct.unpack_from(fmt, self.data, self.offset)) if keep else []
            self.offset += struct.calcsize(fmt)
            return items
        return [self.value(item_kind) for _ in range(length)]
