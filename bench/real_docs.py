"""A real corpus, as a new user meets it: a Debian package's HTML manual.

    .venv/bin/python bench/real_docs.py [--limit N] [--docs DIR] [--runs 3]

The manual is postgresql-doc-15's (/usr/share/doc/postgresql-doc-15/html, 1,100+
pages); where it is missing the bench installs it with apt-get when it runs as
root, and otherwise exits with the command to run. ``--limit N`` keeps a run
short: the first N pages (by name) as the folder, and ``--max-pages N`` for the
crawl.

Every figure comes from the command line run as a subprocess, as a user runs it
(wall time; peak RSS from the kernel's accounting of that one child, os.wait4):

- ``folder``: ``ragtune ingest DIR`` (a copy of the pages), then ``ragtune sync``
  and a second ``ingest`` with nothing changed;
- ``crawl``: the package's documentation folder served on 127.0.0.1 by this
  process (``/html/index.html`` is the seed, so the manual sits in a folder of
  its site, as in the issue), ``ragtune ingest URL --crawl --max-pages N``, then a
  ``sync`` with nothing changed;
- start-up: ``ragtune --help`` and ``ragtune retrieve`` on the folder's index,
  the median of ``--runs`` runs;
- stderr to a file (not a terminal): how many plain progress lines the folder
  ingest printed instead of silence.

Targets (issue #15): a no-change sync of a ~300-file folder in at most 5 s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ragtune.shop_server import serve_shop

PACKAGE = "postgresql-doc-15"
DOCS = Path("/usr/share/doc/postgresql-doc-15/html")
QUESTION = "How do I create a unique index on two columns?"
SYNC_TARGET_S = 5.0
IN_INDEX = re.compile(r"(?P<documents>\d+) documents?, (?P<chunks>\d+) chunks? in the index")


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float
    stdout: str
    stderr: str

    def totals(self) -> str:
        found = IN_INDEX.search(self.stdout)
        return f"{found['documents']} docs, {found['chunks']} chunks" if found else "n/a"


def ragtune(*args: str, work: Path) -> Run:
    """``python -m ragtune ARGS``, its output in files (stderr is not a terminal)."""
    out, err = work / "stdout.txt", work / "stderr.txt"
    started = time.perf_counter()
    with out.open("w") as stdout, err.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "ragtune", *args], stdout=stdout, stderr=stderr
        )
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    run = Run(seconds, usage.ru_maxrss / 1024, out.read_text(), err.read_text())
    if child.returncode != 0:
        sys.exit(f"`ragtune {' '.join(args)}` failed ({child.returncode}):\n{run.stderr[-3000:]}")
    return run


def docs_folder(given: Path | None) -> Path:
    folder = given or DOCS
    if folder.is_dir():
        return folder
    command = f"apt-get install -y {PACKAGE}"
    if given is None and hasattr(os, "geteuid") and os.geteuid() == 0:
        print(f"{folder} is missing; running `{command}`", flush=True)
        subprocess.run(["apt-get", "install", "-y", PACKAGE], check=True)
        if folder.is_dir():
            return folder
    sys.exit(f"{folder} is missing: install it with `sudo {command}` (or give --docs DIR)")


def copy_pages(source: Path, target: Path, limit: int | None) -> int:
    target.mkdir(parents=True)
    pages = sorted(source.glob("*.html"))[:limit]
    for page in pages:
        shutil.copy2(page, target / page.name)
    return len(pages)


def median_seconds(runs: int, *args: str, work: Path) -> float:
    return statistics.median(ragtune(*args, work=work).seconds for _ in range(runs))


def progress_lines(stderr: str) -> int:
    return sum(1 for line in stderr.splitlines() if re.match(r"(Reading|Embedding): ", line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="pages to read (default: all)")
    parser.add_argument("--docs", type=Path, default=None, help=f"the manual (default {DOCS})")
    parser.add_argument("--runs", type=int, default=3, help="runs per start-up figure")
    args = parser.parse_args()
    docs = docs_folder(args.docs)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows: list[tuple[str, str, str]] = []

    def row(what: str, run: Run, extra: str = "") -> None:
        rows.append((what, f"{run.seconds:8.1f} s {run.peak_rss_mb:7.0f} MB", extra))
        print(f"{what:<34} {rows[-1][1]}  {extra}", flush=True)

    with tempfile.TemporaryDirectory(prefix="ragtune-real-docs-") as scratch:
        work = Path(scratch)
        pages = copy_pages(docs, work / "manual", args.limit)
        print(
            f"{pages} pages of {docs} (of {len(list(docs.glob('*.html')))}), {os.cpu_count()} CPUs"
        )
        folder_index, crawl_index = work / "folder-idx", work / "crawl-idx"

        first = ragtune("ingest", str(work / "manual"), "--index", str(folder_index), work=work)
        silence = f"plain progress lines on stderr: {progress_lines(first.stderr)}"
        row("folder: ingest", first, f"{first.totals()}; {silence}")
        synced = ragtune("sync", "--index", str(folder_index), work=work)
        verdict = "target met" if synced.seconds <= SYNC_TARGET_S else "target NOT met"
        row(
            "folder: sync, nothing changed",
            synced,
            f"{synced.totals()}; <= {SYNC_TARGET_S:g} s: {verdict}",
        )
        again = ragtune("ingest", str(work / "manual"), "--index", str(folder_index), work=work)
        row("folder: ingest again, unchanged", again, again.totals())

        max_pages = str(args.limit or 10_000)
        with serve_shop(docs.parent) as base:  # any static folder, Last-Modified included
            seed = f"{base}/{docs.name}/index.html"
            crawl = ragtune(
                "ingest", seed, "--crawl", "--max-pages", max_pages, "--index", str(crawl_index),
                work=work,
            )  # fmt: skip
            stopped = next((line for line in crawl.stdout.splitlines() if "stopped" in line), "")
            row("crawl: ingest", crawl, f"{crawl.totals()} {stopped}".strip())
            crawl_sync = ragtune("sync", "--index", str(crawl_index), work=work)
            row("crawl: sync, nothing changed", crawl_sync, crawl_sync.totals())

        help_s = median_seconds(args.runs, "--help", work=work)
        retrieve_s = median_seconds(
            args.runs, "retrieve", QUESTION, "--index", str(folder_index), work=work
        )
        print(f"{'start-up: ragtune --help':<34} {help_s:8.2f} s (median of {args.runs})")
        print(f"{'start-up: ragtune retrieve':<34} {retrieve_s:8.2f} s (median of {args.runs})")


if __name__ == "__main__":
    main()
