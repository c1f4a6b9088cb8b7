"""A tokenizer trained on your own text: byte-level BPE, or one token per character.

    corpus texts -> BPE: tokenizers' BpeTrainer, on every core | char: character counts
      -> tokenizers.Tokenizer -> OUTPUT/tokenizer.json, tokenizer_config.json,
         ragtune_tokenizer.json (how it was trained)

Both kinds split text exactly as SmolLM2 does (each digit alone, then GPT-2's byte-level
expression; no normalizer), so the GGUF exporter declares llama.cpp's ``smollm``
pre-tokenizer for them and ragtune's in-process GGUF token counter rebuilds them. Byte-level
means lossless: every UTF-8 text is a sequence of the 256 byte tokens, so
``decode(encode(text)) == text`` for any text, seen in training or not.

Special tokens are SmolLM2's: ``<|endoftext|>`` (id 0; the bos, eos, unk and pad token,
which ends every document in pretraining), then ``<|im_start|>`` and ``<|im_end|>`` for
the ChatML chat template that ``ragtune finetune`` renders conversations with; callers may
add more after them.

The character vocabulary (the classic baseline) is the 256 byte tokens plus, for each
multi-byte character seen, the merges that join its bytes into one token: every character
seen is one token (most frequent first, up to the vocabulary size asked for), and any other
text still round-trips as bytes.

The files are laid out as transformers' ``save_pretrained`` does, but written here:
importing transformers would cost more than training a small vocabulary, and its version 5
names a tokenizer class that version 4 cannot load.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ragtune.atomic import StagedDirectory, write_failure
from ragtune.errors import DatasetError, RagtuneError, TrainingError
from ragtune.train.data.encode import CHATML_TEMPLATE
from ragtune.train.outputs import check_parents, refuse_inputs_within
from ragtune.train.pretrain.corpus import Corpus

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TokenizerKind = Literal["bpe", "char"]
# Small enough for a corpus of a few MB to fill and a tiny model's embedding to stay small.
DEFAULT_VOCAB_SIZE = 8192
# Token ids are 32-bit in tokenizers and in llama.cpp.
MAX_VOCAB_SIZE = 2**32 - 1
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
DEFAULT_SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)
# SmolLM2's; a model trained with this tokenizer records its own context when saved with it.
DEFAULT_MODEL_MAX_LENGTH = 8192
INFO_FILE = "ragtune_tokenizer.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", INFO_FILE)
# Called with the number of documents read so far.
ReadHook = Callable[[int], None]
# tokenizers runs single-threaded when this says false, as users (and transformers, once
# it has generated) set it to silence the warning about forking after parallel work.
_PARALLELISM_VARIABLE = "TOKENIZERS_PARALLELISM"


def _bytes_to_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte (``tokenizers``' ByteLevel alphabet): bytes
    that print as themselves stay, the others move to U+0100 onwards, in byte order."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    symbols: dict[int, str] = {byte: chr(byte) for byte in printable}
    shifted = (byte for byte in range(256) if byte not in symbols)
    for offset, byte in enumerate(shifted):
        symbols[byte] = chr(0x100 + offset)
    return [symbols[byte] for byte in range(256)]


BYTE_SYMBOLS = _bytes_to_symbols()
_SYMBOL_BYTES = {symbol: byte for byte, symbol in enumerate(BYTE_SYMBOLS)}
# Two bytes that valid UTF-8 never puts side by side (0xC0 never occurs at all): their
# merge never applies. llama.cpp refuses a BPE vocabulary without merges, and a character
# vocabulary over ASCII text has none, so this one stands in.
STAND_IN_MERGE = (BYTE_SYMBOLS[0xC0], BYTE_SYMBOLS[0xC0])


@dataclass(frozen=True)
class TokenizerReport:
    """How a tokenizer was trained: the summary a user sees and ``ragtune_tokenizer.json``."""

    kind: TokenizerKind
    vocab_size: int  # tokens in all: special, byte and merged
    merges: int
    special_tokens: tuple[str, ...]
    documents: int
    bytes: int  # of the documents' text, as UTF-8
    seconds: float  # reading and training, not saving
    corpus: str
    fingerprint: str
    # char only: the characters that are one token each, of those seen.
    characters: int | None = None
    characters_seen: int | None = None

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["special_tokens"] = list(self.special_tokens)
        return {key: value for key, value in record.items() if value is not None}


@dataclass(frozen=True)
class TrainedTokenizer:
    """A tokenizer in memory, not yet saved (``save_tokenizer`` writes it)."""

    tokenizer: Tokenizer
    report: TokenizerReport


def train_tokenizer(
    corpus: Corpus,
    output: Path,
    vocab_size: int | None = None,
    *,
    char: bool = False,
    special_tokens: Sequence[str] = (),
    overwrite: bool = False,
    show_progress: bool = False,
    on_read: ReadHook | None = None,
) -> TokenizerReport:
    """Train a tokenizer on ``corpus`` and save it to the directory ``output``, whole or not
    at all. A non-empty ``output`` is replaced only with ``overwrite``; never one that holds
    the corpus. See ``build_tokenizer`` for the other arguments."""
    output = Path(output).expanduser()
    check_settings(vocab_size, special_tokens)  # before any file is looked at
    _check_output(output, corpus, overwrite)
    trained = build_tokenizer(
        corpus,
        vocab_size,
        char=char,
        special_tokens=special_tokens,
        show_progress=show_progress,
        on_read=on_read,
    )
    _save_atomically(trained, output)
    return trained.report


def build_tokenizer(
    corpus: Corpus,
    vocab_size: int | None = None,
    *,
    char: bool = False,
    special_tokens: Sequence[str] = (),
    show_progress: bool = False,
    on_read: ReadHook | None = None,
) -> TrainedTokenizer:
    """Train a tokenizer on ``corpus`` in memory.

    ``vocab_size`` counts every token (special, byte and merged): BPE learns merges until
    it is reached (``DEFAULT_VOCAB_SIZE`` when None), and a corpus too small to get there is
    an error; ``char`` keeps the most frequent characters that fit in it (all when None).
    ``special_tokens`` come after SmolLM2's three. ``show_progress`` lets tokenizers draw
    its own bars on stderr (a terminal only); ``on_read`` is called as documents are read.
    """
    specials = check_settings(vocab_size, special_tokens)
    fingerprint = corpus.fingerprint()  # a missing path fails here, before any reading
    reading = _Reading(corpus.texts(), on_read)
    started = time.perf_counter()
    characters: tuple[int, int] | None = None
    if char:
        tokenizer, characters = _train_char(reading, vocab_size, specials)
    else:
        tokenizer = _train_bpe(reading, vocab_size or DEFAULT_VOCAB_SIZE, specials, show_progress)
    report = TokenizerReport(
        kind="char" if char else "bpe",
        vocab_size=tokenizer.get_vocab_size(),
        merges=len(_merges(tokenizer)),
        special_tokens=specials,
        documents=reading.documents,
        bytes=reading.bytes,
        seconds=time.perf_counter() - started,
        corpus=corpus.describe(),
        fingerprint=fingerprint,
        characters=characters[0] if characters else None,
        characters_seen=characters[1] if characters else None,
    )
    return TrainedTokenizer(tokenizer, report)


def check_settings(vocab_size: int | None, special_tokens: Sequence[str]) -> tuple[str, ...]:
    """The special tokens in id order, once the settings are known to make a tokenizer."""
    specials = _special_tokens(special_tokens)
    # The bytes, the special tokens and one merge (llama.cpp loads no BPE without one).
    smallest = len(BYTE_SYMBOLS) + len(specials) + 1
    if vocab_size is None:
        return specials
    if vocab_size < smallest:
        raise TrainingError(
            f"--vocab-size {vocab_size} is too small: 256 byte tokens, {len(specials)} special "
            f"tokens and one merge need at least {smallest}"
        )
    if vocab_size > MAX_VOCAB_SIZE:
        raise TrainingError(
            f"--vocab-size {vocab_size} is too large: token ids are 32-bit, "
            f"at most {MAX_VOCAB_SIZE:,}"
        )
    return specials


def _special_tokens(extra: Sequence[str]) -> tuple[str, ...]:
    specials = list(DEFAULT_SPECIAL_TOKENS)
    for token in extra:
        if not token.strip():
            raise TrainingError("a special token cannot be empty or blank")
        if len(token) == 1:
            # It would be cut out of every text as a special token, and lost from the text.
            raise TrainingError(f"special token {token!r} is a single character; use a longer one")
        spelled = _byte_level_reading(token)
        if spelled is not None and spelled != token:
            # A merge learned for that text would share the special token's id, and decode
            # as the special token's text: the round trip would no longer be lossless.
            raise TrainingError(
                f"special token {token!r} is how the tokenizer spells {spelled!r} inside; "
                "use another"
            )
        if token not in specials:
            specials.append(token)
    return tuple(specials)


def _byte_level_reading(token: str) -> str | None:
    """The text ``token`` stands for when read as byte-level symbols, if it reads as any."""
    if not all(symbol in _SYMBOL_BYTES for symbol in token):
        return None
    try:
        return bytes(_SYMBOL_BYTES[symbol] for symbol in token).decode("utf-8")
    except UnicodeDecodeError:
        return None


class _Reading:
    """The corpus's texts as the trainer takes them, counted on the way."""

    def __init__(self, texts: Iterable[str], on_read: ReadHook | None) -> None:
        self._texts = texts
        self._on_read = on_read
        self.documents = 0
        self.bytes = 0

    def __iter__(self) -> Iterator[str]:
        for text in self._texts:
            self.documents += 1
            self.bytes += len(text.encode("utf-8"))
            if self._on_read is not None:
                self._on_read(self.documents)
            yield text


# ----------------------------------------------------------------------------- training


def _new_tokenizer(model: Any) -> Tokenizer:
    """A tokenizer around ``model`` that splits and decodes text as SmolLM2's does."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors

    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    # Offsets only: it adds no token (no BOS), as in SmolLM2.
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def _train_bpe(
    texts: Iterable[str], vocab_size: int, specials: Sequence[str], show_progress: bool
) -> Tokenizer:
    from tokenizers import models, pre_tokenizers, trainers

    tokenizer = _new_tokenizer(models.BPE())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    with _every_core():
        tokenizer.train_from_iterator(texts, trainer=trainer)
    reached = tokenizer.get_vocab_size()
    if reached < vocab_size:  # the trainer ran out of pairs to merge
        raise DatasetError(
            f"the corpus fills only {reached:,} of the {vocab_size:,} tokens asked for: "
            f"use --vocab-size {reached} or less, or train on more text"
        )
    return tokenizer


@contextmanager
def _every_core() -> Iterator[None]:
    """tokenizers' trainer counts words and pairs on every core (Rayon) unless
    TOKENIZERS_PARALLELISM says no: training forks nothing, so it runs parallel whatever
    the variable; RAYON_NUM_THREADS still caps the threads."""
    previous = os.environ.get(_PARALLELISM_VARIABLE)
    os.environ[_PARALLELISM_VARIABLE] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_PARALLELISM_VARIABLE, None)
        else:
            os.environ[_PARALLELISM_VARIABLE] = previous


def _train_char(
    texts: Iterable[str], vocab_size: int | None, specials: Sequence[str]
) -> tuple[Tokenizer, tuple[int, int]]:
    """The character vocabulary and (characters that are one token, characters seen)."""
    from tokenizers import AddedToken, models

    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(text)
    vocab, merges, kept = char_vocabulary(counts, specials, vocab_size)
    tokenizer = _new_tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in specials]
    )
    return tokenizer, (kept, len(counts))


def char_vocabulary(
    counts: Counter[str], specials: Sequence[str], vocab_size: int | None = None
) -> tuple[dict[str, int], list[tuple[str, str]], int]:
    """(vocabulary, merges, characters kept) making each counted character one token.

    Ids follow tokenizers' BPE trainer: special tokens, the 256 byte symbols in code point
    order, then merged tokens in merge order. A character of n UTF-8 bytes is built left to
    right by n - 1 merges, each joining a prefix of the character to its next byte; the
    prefixes are tokens of their own, shared between characters. Such a merge can never
    join bytes of two characters, since its right side is a continuation byte.
    """
    vocab = {token: index for index, token in enumerate(specials)}
    for symbol in sorted(BYTE_SYMBOLS):
        vocab.setdefault(symbol, len(vocab))
    merges: list[tuple[str, str]] = []
    limit = vocab_size if vocab_size is not None else MAX_VOCAB_SIZE
    kept = 0
    for character, _count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        symbols = [BYTE_SYMBOLS[byte] for byte in character.encode("utf-8")]
        prefixes = list(accumulate(symbols))
        missing = sum(1 for prefix in prefixes if prefix not in vocab)
        if len(vocab) + missing > limit:
            continue  # a less frequent character may still fit
        for left, right in zip(prefixes, symbols[1:], strict=False):
            if left + right not in vocab:
                vocab[left + right] = len(vocab)
                merges.append((left, right))
        kept += 1
    if not merges:
        vocab["".join(STAND_IN_MERGE)] = len(vocab)
        merges.append(STAND_IN_MERGE)
    return vocab, merges, kept


def _merges(tokenizer: Tokenizer) -> list[Any]:
    model = json.loads(tokenizer.to_str())["model"]
    return list(model.get("merges") or [])


# ----------------------------------------------------------------------------- saving


def save_tokenizer(
    tokenizer: Tokenizer,
    directory: Path,
    *,
    model_max_length: int = DEFAULT_MODEL_MAX_LENGTH,
    report: TokenizerReport | None = None,
) -> None:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``directory`` (made if
    missing), and ``ragtune_tokenizer.json`` when a report is given: what
    ``AutoTokenizer.from_pretrained`` (transformers 4 and 5) and the GGUF exporter read.

    The files are written in place: a caller that must not leave half a directory stages
    it (``ragtune.atomic.StagedDirectory``), as ``train_tokenizer`` does.
    """
    directory.mkdir(parents=True, exist_ok=True)
    config = tokenizer_config(tokenizer, model_max_length)
    tokenizer.save(str(directory / "tokenizer.json"))
    _write_json(directory / "tokenizer_config.json", config)
    if report is not None:
        _write_json(directory / INFO_FILE, report.as_dict())


def tokenizer_config(tokenizer: Tokenizer, model_max_length: int) -> dict[str, Any]:
    """``tokenizer_config.json``: the special tokens' roles, the chat template and no
    clean-up of spaces on decoding (which would break the lossless round trip)."""
    added = tokenizer.get_added_tokens_decoder()
    specials = [added[index].content for index in sorted(added) if added[index].special]
    if ENDOFTEXT not in specials:
        raise TrainingError(f"the tokenizer has no {ENDOFTEXT} special token to end documents")
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": ENDOFTEXT,
        "eos_token": ENDOFTEXT,
        "unk_token": ENDOFTEXT,
        "pad_token": ENDOFTEXT,
        "additional_special_tokens": [token for token in specials if token != ENDOFTEXT],
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
    }
    if IM_START in specials and IM_END in specials:
        config["chat_template"] = CHATML_TEMPLATE
    return config


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _check_output(output: Path, corpus: Corpus, overwrite: bool) -> None:
    """Refuse, before any training, what saving would refuse or regret."""
    if os.path.lexists(output) and not output.is_dir():
        raise TrainingError(f"output {output} is a file, not a directory")
    check_parents(output)
    inputs = [("training data", corpus.data), ("index", corpus.from_index)]
    refuse_inputs_within(output, [(label, path) for label, path in inputs if path is not None])
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise TrainingError(f"output {output} is not empty; pass --overwrite to replace it")


def _save_atomically(trained: TrainedTokenizer, output: Path) -> None:
    try:
        staging = StagedDirectory(output)
    except OSError as error:
        raise TrainingError(
            f"cannot write into {output.parent}: {error.strerror or error}"
        ) from None
    try:
        with staging as scratch:
            save_tokenizer(trained.tokenizer, scratch, report=trained.report)
    except RagtuneError:
        raise
    except Exception as error:  # OSError, or tokenizers' own exception for a failed write
        reason = write_failure(error, output.parent)
        raise TrainingError(f"cannot save the tokenizer to {output}: {reason}") from None


__all__ = [
    "DEFAULT_SPECIAL_TOKENS",
    "DEFAULT_VOCAB_SIZE",
    "TokenizerReport",
    "TrainedTokenizer",
    "build_tokenizer",
    "save_tokenizer",
    "train_tokenizer",
]
