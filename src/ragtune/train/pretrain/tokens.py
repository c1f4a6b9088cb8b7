"""A corpus tokenized once into a memory-mapped token file, split into train and val.

    RUN/data/tokens.bin    every document's token ids, each followed by the end-of-text id
                           (uint16 when the vocabulary fits, else uint32), little-endian
    RUN/data/tokens.json   dtype, counts, where validation starts, and what was tokenized

Training reads random windows straight from the memory map, so a corpus larger than RAM
streams from disk. The split is by position, as nanoGPT's: the first ``1 - val_fraction``
of the tokens train, the rest validate. Re-running reuses the file while the corpus
(its files' sizes and mtimes, or the index's manifest) and the tokenizer are unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.atomic import StagedDirectory, write_failure
from ragtune.errors import DatasetError, TrainingError
from ragtune.train.pretrain.corpus import Corpus

TOKENS = "tokens.bin"
META = "tokens.json"
FORMAT = 1
# Documents tokenized per batch: tokenizers encodes a batch on all cores.
BATCH_CHARS = 4_000_000


@dataclass(frozen=True)
class TokenMeta:
    format: int
    dtype: str  # "uint16" or "uint32"
    tokens: int
    val_start: int
    documents: int
    characters: int
    corpus: str
    corpus_fingerprint: str
    tokenizer_digest: str
    eot_id: int

    @property
    def train_tokens(self) -> int:
        return self.val_start

    @property
    def val_tokens(self) -> int:
        return self.tokens - self.val_start


@dataclass
class TokenData:
    meta: TokenMeta
    tokens: np.ndarray  # a memory map: nothing is read until a window is taken


def token_dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 2**16 else "uint32"


def open_tokens(directory: Path) -> TokenData:
    meta = _read_meta(directory)
    if meta is None:
        raise TrainingError(f"{directory}: no token file (tokens.json missing or damaged)")
    path = directory / TOKENS
    expected = meta.tokens * np.dtype(meta.dtype).itemsize
    if not path.is_file() or path.stat().st_size != expected:
        raise TrainingError(f"{path}: token file damaged (size differs from tokens.json)")
    tokens = np.memmap(path, dtype=np.dtype(meta.dtype).newbyteorder("<"), mode="r")
    return TokenData(meta, tokens)


def reusable(directory: Path, corpus_fingerprint: str, tokenizer_digest: str) -> bool:
    meta = _read_meta(directory)
    return (
        meta is not None
        and meta.format == FORMAT
        and meta.corpus_fingerprint == corpus_fingerprint
        and meta.tokenizer_digest == tokenizer_digest
        and (directory / TOKENS).is_file()
    )


def tokenize_corpus(
    corpus: Corpus,
    tokenizer: Any,
    tokenizer_digest: str,
    directory: Path,
    val_fraction: float,
    min_tokens: int,
    fingerprint: str,
    progress: Callable[[int], None] | None = None,
) -> TokenMeta:
    """Write ``directory`` whole (staged beside it, put in place at the end), or nothing.

    ``tokenizer`` is a ``tokenizers.Tokenizer``; ``min_tokens`` is what each of train and
    val needs at least (one window: context + 1), checked before anything is kept.
    ``fingerprint`` is the corpus' (``Corpus.fingerprint``), taken before reading: a file
    changed while it is read then makes the next run tokenize again.
    ``progress`` gets the number of characters done after each batch.
    """
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    dtype = np.dtype(token_dtype(vocab)).newbyteorder("<")
    eot = eot_id(tokenizer)
    try:
        with StagedDirectory(directory) as staging:
            count, documents, characters = 0, 0, 0
            with open(staging / TOKENS, "wb") as out:
                for batch in _batches(corpus.pieces()):
                    texts = [text for text, _ends in batch]
                    encoded = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
                    for item, (_text, ends) in zip(encoded, batch, strict=True):
                        ids = np.asarray(item.ids + [eot] if ends else item.ids, dtype=dtype)
                        ids.tofile(out)
                        count += len(ids)
                        documents += ends
                    characters += sum(len(text) for text in texts)
                    if progress is not None:
                        progress(characters)
            val_start = _split(count, val_fraction, min_tokens, corpus)
            meta = TokenMeta(
                FORMAT,
                dtype.name,
                count,
                val_start,
                documents,
                characters,
                corpus.describe(),
                fingerprint,
                tokenizer_digest,
                eot,
            )
            (staging / META).write_text(json.dumps(asdict(meta), indent=2), encoding="utf-8")
    except OSError as error:
        raise TrainingError(
            f"cannot write the token file in {directory}: {write_failure(error, directory)}"
        ) from None
    return meta


def _split(count: int, val_fraction: float, min_tokens: int, corpus: Corpus) -> int:
    val = int(count * val_fraction)
    train = count - val
    if train < min_tokens or (val_fraction > 0 and val < min_tokens):
        raise DatasetError(
            f"{corpus.describe()}: {count:,} tokens, {train:,} to train and {val:,} to "
            f"validate; each needs one window of context + 1 = {min_tokens:,} tokens; "
            "give more text or a smaller context"
        )
    return train


def _batches(pieces: Iterator[tuple[str, bool]]) -> Iterator[list[tuple[str, bool]]]:
    batch: list[tuple[str, bool]] = []
    size = 0
    for piece in pieces:
        batch.append(piece)
        size += len(piece[0])
        if size >= BATCH_CHARS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def eot_id(tokenizer: Any) -> int:
    for name in ("<|endoftext|>", "</s>", "<eos>"):
        token = tokenizer.token_to_id(name)
        if token is not None:
            return int(token)
    raise TrainingError("the tokenizer has no end-of-text token (<|endoftext|>) to end documents")


def _read_meta(directory: Path) -> TokenMeta | None:
    try:
        values = json.loads((directory / META).read_text(encoding="utf-8"))
        return TokenMeta(**values)
    except (OSError, ValueError, TypeError):
        return None
