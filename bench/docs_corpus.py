"""Answer quality on a real documentation corpus: PostgreSQL 15's HTML manual.

    .venv/bin/python bench/docs_corpus.py                  # ingest once, then every answer mode
    .venv/bin/python bench/docs_corpus.py --modes extract --limit 5   # a quick smoke run
    .venv/bin/python bench/docs_corpus.py --verify         # check the question files only

The corpus is Debian's ``postgresql-doc-15`` (``apt-get install -y postgresql-doc-15``),
which installs the manual as HTML under /usr/share/doc/postgresql-doc-15/html. Three
coherent parts of it are indexed, 231 pages: the SQL command reference (``sql-*.html``,
with the SQL syntax chapter's pages), the tutorial (``tutorial*.html``) and the data
types chapter (``datatype*.html``). ``ragtune ingest`` reads them from that folder with
``--include`` globs into ``bench/results/pgdocs-index``. The index is kept between runs;
``--fresh`` rebuilds it and reports the ingest time, which is needed whenever indexing
code changed, since the index keeps what was computed at ingest (the score calibration
that abstention relies on).

Questions, SQuAD v1.1 JSON, read by ``ragtune.eval.squad.load_squad``:

- ``bench/data/pgdocs-questions.json``: 49 answerable questions. Each article's
  ``title`` is the gold page (its path under the HTML folder); each paragraph's
  ``context`` is the section of that page's extracted Markdown (what ``ragtune extract
  PAGE`` prints, and what the index holds) around the answer, and ``answer_start`` is
  the answer's offset in it. Every gold answer is a literal span of the page's Markdown
  on one line, so a chunk that holds it holds it verbatim.
- ``bench/data/pgdocs-unanswerable.json``: 12 questions the indexed pages cannot
  answer, represented as ``ragtune eval answers --unanswerable`` reads them: SQuAD
  questions whose article the index does not hold. Their articles are other pages of
  the same manual (server configuration, client authentication, pg_dump, contrib
  modules), so the questions are in the domain and their gold answers are real text,
  but the answer is in no indexed page. Each question also carries
  ``absent_from_corpus``: the terms it is about, which ``--verify`` checks occur in no
  indexed page (a term the question turns on, e.g. ``shared_buffers``, not its answer:
  "1 GB" is in the corpus, about text strings, while ``max_wal_size`` is not).

Each answer mode runs ``ragtune eval answers --qa ... --unanswerable ... --answer MODE``
on the index (its measures are defined in ``ragtune.eval.answers``); the per-mode
summaries, as the CLI renders them (``--markdown``), are printed as one Markdown table,
and every answer is kept in ``bench/results/pgdocs-answers-MODE.json``. Retrieval alone
(``ragtune eval retrieval``, no LLM) is measured first: the ceiling the answers work under.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "postgresql-doc-15"
HTML = Path("/usr/share/doc") / PACKAGE / "html"
# The indexed part of the manual, as globs relative to HTML (ragtune ingest --include).
PAGE_PATTERNS = ("sql-*.html", "tutorial*.html", "datatype*.html")
QUESTIONS = ROOT / "bench" / "data" / "pgdocs-questions.json"
UNANSWERABLE = ROOT / "bench" / "data" / "pgdocs-unanswerable.json"
RESULTS = ROOT / "bench" / "results"
INDEX = RESULTS / "pgdocs-index"
ANSWER_MODES = ("generate", "extract", "auto")
# Not a mode of the engine: run without --answer, measuring whatever the engine defaults to.
ENGINE_DEFAULT = "default"
# The ragtune CLI of the interpreter running this script, so .venv's ragtune is used.
RAGTUNE = (sys.executable, "-m", "ragtune")


def installed_version(package: str) -> str | None:
    """The installed Debian package's version, or None when it is not installed."""
    try:
        completed = subprocess.run(
            ["dpkg-query", "--show", "--showformat=${Status} ${Version}", package],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:  # not a Debian system: the manual must come from elsewhere
        return None
    status, _, version = completed.stdout.rpartition(" ")
    return version if completed.returncode == 0 and status == "install ok installed" else None


def require_manual() -> str:
    """The manual's package version; exits with the one command that installs it if absent."""
    version = installed_version(PACKAGE)
    if version is None or not HTML.is_dir():
        print(f"{PACKAGE} is not installed. Install it with:", file=sys.stderr)
        print(f"  apt-get install -y {PACKAGE}", file=sys.stderr)
        raise SystemExit(1)
    return version


def corpus_pages() -> list[Path]:
    """The indexed pages, by name: what PAGE_PATTERNS select from the manual."""
    return sorted({page for pattern in PAGE_PATTERNS for page in HTML.glob(pattern)})


def ingest(index: Path) -> float:
    """Index the corpus pages into ``index`` with ``ragtune ingest``; its wall time in s."""
    includes = [argument for pattern in PAGE_PATTERNS for argument in ("--include", pattern)]
    started = time.perf_counter()
    subprocess.run([*RAGTUNE, "ingest", str(HTML), *includes, "--index", str(index)], check=True)
    return time.perf_counter() - started


def index_stats(index: Path) -> dict[str, Any]:
    from ragtune import VectorStoreIndex

    return VectorStoreIndex.load(index).stats()


# --- The question files, checked against the pages -----------------------------------


@dataclass(frozen=True)
class Entry:
    """One question as stored: its page (the article title), context and gold answers."""

    id: str
    page: str
    question: str
    context: str
    answers: list[dict[str, Any]]
    absent_from_corpus: list[str]


def entries(path: Path) -> list[Entry]:
    """Every question of a SQuAD file with the fields load_squad drops (answer_start,
    absent_from_corpus), for checking them against the pages."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        Entry(
            id=qa["id"],
            page=article["title"],
            question=qa["question"],
            context=paragraph["context"],
            answers=qa["answers"],
            absent_from_corpus=qa.get("absent_from_corpus", []),
        )
        for article in data["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]


def verify_questions() -> list[str]:
    """Problems with the question files, none when they are sound.

    Answerable: the gold page is an indexed page, its context is a literal part of the
    page's extracted Markdown, and each answer sits at its answer_start and on one line
    of it. Unanswerable: the page is not indexed and no indexed page mentions any of the
    question's absent_from_corpus terms (compared case-insensitively).
    """
    from ragtune.eval.squad import load_squad
    from ragtune.extract.files import file_main_content

    problems: list[str] = []
    for path in (QUESTIONS, UNANSWERABLE):
        load_squad(path)  # raises on anything the evaluation could not read
    pages = {page.name for page in corpus_pages()}
    markdown: dict[str, str] = {}

    def page_markdown(name: str) -> str:
        if name not in markdown:
            markdown[name] = file_main_content(HTML / name).markdown
        return markdown[name]

    for entry in entries(QUESTIONS):
        where = f"{QUESTIONS.name} {entry.id} ({entry.page})"
        if entry.page not in pages:
            problems.append(f"{where}: the gold page is not an indexed page")
            continue
        if entry.context not in page_markdown(entry.page):
            problems.append(f"{where}: the context is not in the page's extracted Markdown")
        for answer in entry.answers:
            text, start = answer["text"], answer["answer_start"]
            if entry.context[start : start + len(text)] != text:
                problems.append(f"{where}: {text!r} is not at answer_start {start}")
            if "\n" in text:
                problems.append(f"{where}: {text!r} spans lines")

    corpus_text = {name: page_markdown(name).lower() for name in sorted(pages)}
    for entry in entries(UNANSWERABLE):
        where = f"{UNANSWERABLE.name} {entry.id} ({entry.page})"
        if entry.page in pages:
            problems.append(f"{where}: its page is indexed, so it may be answerable")
        if not entry.absent_from_corpus:
            problems.append(f"{where}: no absent_from_corpus terms to check")
        for term in entry.absent_from_corpus:
            found = [name for name, text in corpus_text.items() if term.lower() in text]
            if found:
                problems.append(f"{where}: {term!r} occurs in {', '.join(found[:3])}")
    return problems


# --- The evaluation ------------------------------------------------------------------


def evaluate_retrieval(index: Path, limit: int | None) -> dict[str, Any]:
    """``ragtune eval retrieval`` on the answerable questions, as its JSON."""
    command = [*RAGTUNE, "eval", "retrieval", "--qa", str(QUESTIONS), "--index", str(index)]
    command += ["--json"] + (["--limit", str(limit)] if limit else [])
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def evaluate_mode(index: Path, mode: str, limit: int | None) -> str | None:
    """Run ``ragtune eval answers`` in one answer mode, keeping every answer in
    ``pgdocs-answers-MODE.json`` and its summary table in ``pgdocs-answers-MODE.md``
    under RESULTS; None when it ran, else the error it ended with."""
    command = [*RAGTUNE, "eval", "answers", "--qa", str(QUESTIONS), "--index", str(index)]
    command += ["--unanswerable", str(UNANSWERABLE), "--json"]
    command += ["--markdown", str(RESULTS / f"pgdocs-answers-{mode}.md")]
    command += [] if mode == ENGINE_DEFAULT else ["--answer", mode]
    command += ["--limit", str(limit)] if limit else []
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        return (completed.stderr.strip() or completed.stdout.strip() or "no output")[-2000:]
    (RESULTS / f"pgdocs-answers-{mode}.json").write_text(completed.stdout, encoding="utf-8")
    return None


def merged_table(tables: list[str]) -> str:
    """One Markdown table from the one-row tables of several runs: the first table's
    header and rule, then each table's rows. The CLI renders every figure, so this
    file never needs to know which measures ``eval answers`` reports."""
    header = tables[0].splitlines()[:2]
    rows = [line for table in tables for line in table.splitlines()[2:] if line.strip()]
    return "\n".join(header + rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, default=INDEX, help="Index directory.")
    parser.add_argument("--fresh", action="store_true", help="Rebuild the index, timed.")
    parser.add_argument(
        "--modes",
        default=",".join(ANSWER_MODES),
        help=f"Answer modes to evaluate, comma-separated (default: all); {ENGINE_DEFAULT!r} "
        "runs the engine without choosing one.",
    )
    parser.add_argument("--limit", type=int, help="Only the first N questions of each file.")
    parser.add_argument("--verify", action="store_true", help="Check the question files only.")
    args = parser.parse_args()
    # Each step takes minutes: show its line when it is done, also when piped to a log.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    known = (*ANSWER_MODES, ENGINE_DEFAULT)
    unknown = sorted(set(modes) - set(known))
    if unknown:
        parser.error(f"unknown answer mode {unknown[0]!r}; choose from {', '.join(known)}")

    version = require_manual()
    pages = corpus_pages()
    print(f"{PACKAGE} {version}: {len(pages)} pages ({', '.join(PAGE_PATTERNS)})")
    if args.verify:
        problems = verify_questions()
        for problem in problems:
            print(problem, file=sys.stderr)
        counts = f"{len(entries(QUESTIONS))} answerable, {len(entries(UNANSWERABLE))} unanswerable"
        print(f"{counts} questions: {'OK' if not problems else f'{len(problems)} problems'}")
        raise SystemExit(1 if problems else 0)

    if args.fresh and args.index.exists():
        shutil.rmtree(args.index)
    if not (args.index / "ragtune.json").is_file():
        args.index.parent.mkdir(parents=True, exist_ok=True)
        seconds = ingest(args.index)
        print(f"ingested {len(pages)} pages in {seconds:.0f} s")
    stats = index_stats(args.index)
    print(f"index {args.index}: {stats['documents']} pages, {stats['chunks']} chunks")

    retrieval = evaluate_retrieval(args.index, args.limit)
    recall = "  ".join(f"recall{k} {v:.3f}" for k, v in retrieval["recall"].items())
    print(f"retrieval ({retrieval['mode']}, answer string in a chunk): {recall}")

    tables: list[str] = []
    failures: dict[str, str] = {}
    for mode in modes:
        error = evaluate_mode(args.index, mode, args.limit)
        if error is None:
            tables.append((RESULTS / f"pgdocs-answers-{mode}.md").read_text(encoding="utf-8"))
        else:
            failures[mode] = error
    if tables:
        print(merged_table(tables))
    for mode, error in failures.items():
        print(f"answer mode {mode} failed:\n{error}", file=sys.stderr)
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
