"""Training a tokenizer: ragtune's ``train_tokenizer`` against tokenizers' trainer called
directly, on the same text with the same settings. The wrapper must cost nothing.

.venv/bin/python bench/tokenizer_train.py [--runs 3] [--vocab-size 8192] [--corpus FILE]

The corpus is the text of the 990 extraction-eval pages (``../shared/data/extraction-eval``)
as ragtune's HTML extractor reads it, written as JSONL records ``{"text"}`` (about a minute,
once: --corpus FILE keeps the file and reuses it on the next run). Each run trains a
byte-level BPE of --vocab-size tokens twice, the two taking turns at going first:

- ragtune: ``train_tokenizer`` on the file (reading it, training, and writing
  tokenizer.json, tokenizer_config.json and ragtune_tokenizer.json);
- baseline: the same file read with ``json.loads`` line by line, fed to tokenizers'
  ``BpeTrainer`` with the same pre-tokenizer, decoder and trainer settings, and written as
  tokenizer.json.

Both vocabularies must come out identical. The figure is the ratio of the median wall
times, baseline seconds / ragtune seconds (target: at least 0.95); the ratio of the fastest
runs is printed too, being the least disturbed by other work on a shared machine. The CPU
seconds (all threads) are above the wall time when the trainer uses several cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTRACTION_EVAL = ROOT.parent / "shared" / "data" / "extraction-eval"
TARGET_RATIO = 0.95


def write_corpus(path: Path) -> None:
    """The main text of every extraction-eval page, one JSONL record per page."""
    from ragtune.errors import ExtractionError
    from ragtune.extract.html import extract_html

    pages = json.loads((EXTRACTION_EVAL / "evaldata.json").read_text(encoding="utf-8"))
    written = 0
    with path.open("w", encoding="utf-8") as handle:
        for page in pages.values():
            file = EXTRACTION_EVAL / "eval" / page["file"]
            if not file.is_file():
                file = EXTRACTION_EVAL / "cache" / page["file"]
            try:
                text = extract_html(file.read_bytes()).text
            except ExtractionError:
                continue
            if text.strip():
                handle.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
                written += 1
    print(f"corpus: {written} pages' text written to {path}")


def ragtune_run(corpus: Path, output: Path, vocab_size: int) -> None:
    from ragtune.train.pretrain.corpus import Corpus
    from ragtune.train.pretrain.tokenizer import train_tokenizer

    train_tokenizer(Corpus(data=corpus), output, vocab_size, overwrite=True)


def baseline_run(corpus: Path, output: Path, vocab_size: int) -> None:
    """What a person would write with tokenizers alone, with ragtune's settings."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    def texts() -> Iterator[str]:
        with corpus.open(encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)["text"]

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts(), trainer=trainer)
    output.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(output / "tokenizer.json"))


def timed(run: Callable[[Path, Path, int], None], *args: object) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) of one run."""
    cpu, wall = time.process_time(), time.perf_counter()
    run(*args)  # type: ignore[arg-type]
    return time.perf_counter() - wall, time.process_time() - cpu


def same_vocabulary(first: Path, second: Path) -> bool:
    def model(directory: Path) -> dict[str, object]:
        return json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))["model"]

    return model(first) == model(second)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--corpus", type=Path, help="the JSONL corpus: made if missing, kept")
    args = parser.parse_args()
    import tokenizers

    import ragtune.train.pretrain.tokenizer  # noqa: F401  (imports are not what is timed)

    with tempfile.TemporaryDirectory() as scratch:
        corpus = args.corpus or Path(scratch) / "pages.jsonl"
        if not corpus.is_file():
            write_corpus(corpus)
        size = corpus.stat().st_size
        runs = {"ragtune": ragtune_run, "baseline": baseline_run}
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        load = os.getloadavg()[0]
        for number in range(args.runs):
            order = list(runs) if number % 2 == 0 else list(reversed(runs))
            for name in order:
                output = Path(scratch) / name
                samples[name].append(timed(runs[name], corpus, output, args.vocab_size))
        identical = same_vocabulary(Path(scratch) / "ragtune", Path(scratch) / "baseline")
    wall = {name: statistics.median(s[0] for s in values) for name, values in samples.items()}
    fastest = {name: min(s[0] for s in values) for name, values in samples.items()}
    cpu = {name: statistics.median(s[1] for s in values) for name, values in samples.items()}
    print(
        f"{args.vocab_size:,}-token byte-level BPE on {size / 1e6:.1f} MB of JSONL, "
        f"{args.runs} runs each; tokenizers {tokenizers.__version__}, "
        f"{os.cpu_count()} CPUs, load average {load:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(f"{'':<10}{'median s':>10}{'fastest s':>11}{'CPU s':>8}")
    for name in runs:
        print(f"{name:<10}{wall[name]:10.2f}{fastest[name]:11.2f}{cpu[name]:8.2f}")
    print(f"identical vocabularies: {identical}")
    ratio = wall["baseline"] / wall["ragtune"]
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(
        f"ratio baseline / ragtune: {ratio:.3f}x of the medians (target >= {TARGET_RATIO}: "
        f"{verdict}), {fastest['baseline'] / fastest['ragtune']:.3f}x of the fastest runs"
    )
    if not identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
