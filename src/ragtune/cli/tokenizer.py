"""``ragtune tokenizer train``: a thin shell over ragtune.train.pretrain.tokenizer.

Progress goes to stderr: for BPE on a terminal, tokenizers' own bars, which follow every
phase of training (reading, counting pairs, merging) where ragtune sees only the reading;
otherwise ragtune's count of the documents read (plain lines where stderr is no terminal).
The summary goes to stdout. tokenizers is imported only when the command runs.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ragtune.cli.progress import count_progress
from ragtune.terminal import err, out, styled

Opt = typer.Option


def tokenizer_train_command(
    output: Annotated[
        Path,
        Opt(
            "--output",
            "-o",
            help="Directory to write: tokenizer.json and tokenizer_config.json "
            "(transformers' layout) and ragtune_tokenizer.json.",
        ),
    ],
    data: Annotated[
        Path | None,
        Opt(
            "--data",
            "-d",
            help="Text to train on: a .txt or .md file, a directory of them, "
            'or JSON(L) records {"text": ...}.',
        ),
    ] = None,
    from_index: Annotated[
        Path | None, Opt("--from-index", help="Train on the documents of this ragtune index (too).")
    ] = None,
    vocab_size: Annotated[
        int | None,
        Opt(
            "--vocab-size",
            help="Tokens in all, special and byte tokens included (default 8192). "
            "With --char, the most: the most frequent characters that fit.",
        ),
    ] = None,
    char: Annotated[
        bool,
        Opt(
            "--char",
            help="A character-level vocabulary (one token per character seen) instead of BPE.",
        ),
    ] = False,
    special_token: Annotated[
        list[str] | None,
        Opt(
            "--special-token",
            help="Another special token after <|endoftext|>, <|im_start|> and <|im_end|> "
            "(repeatable).",
        ),
    ] = None,
    overwrite: Annotated[
        bool, Opt("--overwrite", help="Replace a non-empty output directory.")
    ] = False,
) -> None:
    """Train a byte-level BPE tokenizer (or a character-level one) on your own text.

    Lossless on any UTF-8 text; it splits text as SmolLM2 does, so models trained with it
    export to GGUF for llama.cpp.
    """
    from ragtune.train.pretrain.corpus import Corpus
    from ragtune.train.pretrain.tokenizer import train_tokenizer

    corpus = Corpus(data=data, from_index=from_index)
    train = partial(
        train_tokenizer,
        corpus,
        output,
        vocab_size,
        char=char,
        special_tokens=special_token or (),
        overwrite=overwrite,
    )
    if err.is_terminal and not char:
        report = train(show_progress=True)
    else:  # off a terminal, or --char: reading is all there is to see, and ragtune counts it
        with count_progress("Reading the corpus") as on_count:
            # How many documents there are is known only once all are read: no total.
            report = train(on_read=lambda documents: on_count(documents, None))
    kind = "character-level" if report.kind == "char" else "byte-level BPE"
    out.print(Text.assemble(styled("Tokenizer written to", "bold"), f" {output}"))
    out.print(
        f"  {kind}: {_count(report.vocab_size, 'token')} ({_count(report.merges, 'merge')}, "
        f"{len(report.special_tokens)} special)"
    )
    if report.characters is not None:
        out.print(
            f"  characters: {report.characters:,} of {report.characters_seen:,} seen, "
            "one token each"
        )
    out.print(
        f"  corpus: {_count(report.documents, 'document')}, {_size(report.bytes)} ({report.corpus})"
    )
    out.print(f"  trained in {report.seconds:.1f} s")


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
