"""Re-ingest of an unchanged corpus against its first ingest, through the real ingest path.

    .venv/bin/python bench/reingest.py [--runs 1]

Two corpora:

- ``xquad-files``: the 240 XQuAD (English) paragraphs written as a folder of
  Markdown files (``# title`` and the paragraph), ingested as a folder.
- ``shop-crawl``: the demo shop (``ragtune.shop_server``, examples/shop/site)
  served over HTTP on 127.0.0.1 and crawled from ``/products`` with ``--crawl``.

Each corpus is ingested into a new index, then ingested again unchanged:

- ``CLI``: ``python -m ragtune ingest SOURCE --index DIR`` as a subprocess,
  wall time; that includes the interpreter's start and ragtune's imports,
  measured on their own as ``python -m ragtune --help`` (the "start-up"
  column) and also taken out of a second ratio.
- ``in-process``: ``ragtune.ingest.ingest(...)`` called in this process
  (torch and sentence-transformers imported beforehand), with the
  ``IngestResult.insert`` counters (documents seen, unchanged, chunks written,
  chunks embedded) that show whether anything was embedded again.

Target (issue #4): the re-ingest takes at most 1/20 of the first ingest's time.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ragtune.eval.squad import load_squad
from ragtune.ingest import IngestResult, IngestSettings, ingest
from ragtune.runtime import torch_threads
from ragtune.shop_server import serve_shop

ROOT = Path(__file__).resolve().parents[1]
QA = ROOT.parent / "shared" / "data" / "qa-xquad-en" / "xquad.en.json"
TARGET = 1 / 20
# The CLI's closing summary on stdout (cli/sources.py), read back for its insert
# counters: nouns are singular for 1, and nothing written names no embedded count.
SUMMARY = re.compile(
    r"Indexed (?P<documents>\d+) documents? into .*?: "
    r"(?P<fetched>\d+) fetched, (?P<not_modified>\d+) unchanged, .*?"
    r"(?P<unchanged>\d+) with unchanged text left alone, "
    r"(?P<chunks>\d+) chunks? written(?: \((?P<embedded>\d+) embedded)?",
    re.S,
)


@dataclass
class Corpus:
    name: str
    sources: list[str]
    crawl: bool


@dataclass
class Timing:
    first_s: float
    second_s: float
    first_counts: str
    second_counts: str


def write_xquad_folder(directory: Path) -> int:
    directory.mkdir(parents=True)
    seen: set[str] = set()
    for question in load_squad(QA):
        if question.context in seen:
            continue
        slug = re.sub(r"[^a-z0-9]+", "-", question.title.lower()).strip("-")
        (directory / f"{len(seen):03d}-{slug}.md").write_text(
            f"# {question.title}\n\n{question.context}\n", encoding="utf-8"
        )
        seen.add(question.context)
    return len(seen)


@contextmanager
def corpora(work: Path) -> Iterator[list[Corpus]]:
    files = write_xquad_folder(work / "xquad")
    print(f"xquad-files: {files} Markdown files in {work / 'xquad'}")
    with serve_shop() as base:
        print(f"shop-crawl: {base}/products, --crawl (demo shop served from this process)")
        yield [
            Corpus("xquad-files", [str(work / "xquad")], crawl=False),
            Corpus("shop-crawl", [f"{base}/products"], crawl=True),
        ]


def cli(*args: str) -> tuple[float, str]:
    """The wall time of ``ragtune ARGS`` and what it printed on stdout (its result;
    progress and per-source problems go to stderr)."""
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "ragtune", *args], capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"`ragtune {' '.join(args)}` failed:\n{completed.stderr}")
    return seconds, completed.stdout


def cli_counts(stdout: str) -> str:
    match = SUMMARY.search(stdout)
    if not match:
        return "n/a"
    return "{fetched}/{not_modified} {documents}/{unchanged}/{chunks}/{embedded}".format(
        **match.groupdict(default="0")
    )


def insert_counts(result: IngestResult) -> str:
    read, i = result.report["counts"], result.insert
    return (
        f"{read['fetched']}/{read['unchanged']} {i.documents}/{i.unchanged}/{i.chunks}/{i.embedded}"
    )


def time_cli(corpus: Corpus, index_dir: Path) -> Timing:
    args = [*corpus.sources, "--index", str(index_dir), *(["--crawl"] if corpus.crawl else [])]
    first_s, first_out = cli("ingest", *args)
    second_s, second_out = cli("ingest", *args)
    return Timing(first_s, second_s, cli_counts(first_out), cli_counts(second_out))


def time_in_process(corpus: Corpus, index_dir: Path) -> Timing:
    settings = IngestSettings(crawl=corpus.crawl)
    started = time.perf_counter()
    first = ingest(corpus.sources, index_dir, settings)
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    second = ingest(corpus.sources, index_dir, settings)
    second_s = time.perf_counter() - started
    return Timing(first_s, second_s, insert_counts(first), insert_counts(second))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="repeat everything this many times")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # As the CLI's own first ingest would, but outside the in-process clock.
    import sentence_transformers  # noqa: F401
    import torch  # noqa: F401

    print(f"torch threads {torch_threads()} (RAGTUNE_TORCH_THREADS); {os.cpu_count()} CPUs")
    print(
        "counts: sources read / not modified (HTTP 304), then IngestResult.insert: documents / "
        "unchanged text, left alone / chunks written / chunks embedded"
    )
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="ragtune-bench-") as scratch:
            work = Path(scratch)
            with corpora(work) as items:
                startup_s = min(cli("--help")[0] for _ in range(3))
                rows = []
                for corpus in items:
                    rows.append((corpus, "CLI", time_cli(corpus, work / f"{corpus.name}-cli")))
                    rows.append(
                        (corpus, "in-process", time_in_process(corpus, work / f"{corpus.name}-py"))
                    )
        print(
            f"\nrun {run}: CLI start-up (`python -m ragtune --help`, best of 3) {startup_s:.2f} s"
        )
        print(
            f"{'corpus':<12} {'path':<10} {'first s':>8} {'again s':>8} {'start-up':>8} "
            f"{'ratio':>7} {'ratio-su':>8} {'first counts':>20} {'again counts':>20}  verdict"
        )
        for corpus, path, t in rows:
            ratio = t.second_s / t.first_s
            startup = startup_s if path == "CLI" else 0.0
            net = (t.second_s - startup) / (t.first_s - startup) if path == "CLI" else ratio
            print(
                f"{corpus.name:<12} {path:<10} {t.first_s:8.2f} {t.second_s:8.2f} "
                f"{(f'{startup:.2f}' if path == 'CLI' else '-'):>8} {ratio:7.3f} {net:8.3f} "
                f"{t.first_counts:>20} {t.second_counts:>20}  "
                f"1/{1 / ratio:.0f}: {'target met' if ratio <= TARGET else 'target NOT met'}"
            )
        print(
            "ratio = again / first (wall, start-up included for the CLI); ratio-su = the same "
            f"with the start-up taken out of both; target <= {TARGET:.3f} (1/20)"
        )


if __name__ == "__main__":
    main()
