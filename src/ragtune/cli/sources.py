"""Commands that read sources: ``ingest``, ``sync`` and ``extract``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.text import Text

from ragtune.cli.options import (
    CrawlScope,
    EngineOption,
    HtmlExtractor,
    IndexOption,
    JsonOption,
    RayAddressOption,
    RenderMode,
)
from ragtune.cli.progress import source_progress
from ragtune.terminal import err, out, plain, styled

if TYPE_CHECKING:  # the index and the web stack load only in the commands that use them
    from ragtune.ingest import IngestSettings

# Which of a page's renderings ``extract`` prints.
PageFormat = Literal["markdown", "text"]
# Skipped and failed sources named on stderr after an ingest; the report lists them all
# (a folder of 5,000 images must not bury the summary).
LISTED_TROUBLES = 20


def ingest_and_report(sources: list[str], index_dir: Path, settings: IngestSettings) -> None:
    """Ingest with progress on stderr; then the skipped and failed sources on stderr,
    and the summary, the result, on stdout."""
    from ragtune.ingest import REPORT_FILE, ingest

    with source_progress("Reading") as progress:
        result = ingest(
            sources,
            index_dir,
            settings,
            on_event=progress.on_event,
            on_embed=progress.on_embed,
            on_plan=progress.on_plan,
        )
    report_path = index_dir / REPORT_FILE
    troubles = [url for url in result.report["urls"] if url["status"] in ("skipped", "failed")]
    for url in troubles[:LISTED_TROUBLES]:
        label = styled(f"{url['status']} ", "yellow" if url["status"] == "skipped" else "red")
        err.print(Text.assemble(label, plain(f"{url['url']}: {url['reason']}")))
    if len(troubles) > LISTED_TROUBLES:
        more = len(troubles) - LISTED_TROUBLES
        err.print(plain(f"... and {more} more skipped or failed, all listed in {report_path}"))
    counts = result.report["counts"]
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(result.report["skipped"].items()))
    insert = result.insert
    out.print(
        f"Indexed {_count(result.documents, 'document')} into {index_dir}: "
        f"{counts['fetched']} fetched, {counts['unchanged']} unchanged, "
        f"{counts['skipped']} skipped{f' ({kinds})' if kinds else ''}, {counts['failed']} failed; "
        f"{insert.unchanged} with unchanged text left alone, "
        f"{_written(insert.chunks, insert.embedded)}; "
        f"{_count(result.stats['documents'], 'document')}, "
        f"{_count(result.stats['chunks'], 'chunk')} in the index. "
        f"Report: {report_path}",
    )
    limits = {"max_pages": settings.max_pages, "max_depth": settings.max_depth}
    for kind, unvisited in result.report["unvisited"].items():
        out.print(
            f"The crawl stopped at --{kind.replace('_', '-')} {limits[kind]}: "
            f"{_count(unvisited['count'], 'link')} in its scope left unvisited "
            f"(listed in {REPORT_FILE})"
        )


def _count(n: int, noun: str) -> str:
    """``n`` and the noun, plural unless n is 1: "1 chunk", "3 chunks"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _written(chunks: int, embedded: int) -> str:
    """How many chunks were written, and how many of them were embedded rather than
    taken from the cache, naming the cache only when it gave some."""
    written = f"{_count(chunks, 'chunk')} written"
    if not chunks:
        return written
    if embedded == chunks:
        return f"{written} ({embedded} embedded)"
    return f"{written} ({embedded} embedded, {chunks - embedded} from the cache)"


def ingest_command(
    sources: Annotated[list[str], typer.Argument(help="URLs, files or folders to read.")],
    index: IndexOption,
    crawl: Annotated[bool, typer.Option("--crawl", help="Follow links within --scope.")] = False,
    scope: Annotated[
        CrawlScope,
        typer.Option(
            help="How far --crawl goes: path (the seed's folder: /docs/a.html -> /docs/), "
            "host (the whole site) or domain (its subdomains too)."
        ),
    ] = "path",
    max_pages: Annotated[int, typer.Option(min=1, help="Most pages to fetch.")] = 200,
    max_depth: Annotated[int, typer.Option(min=0, help="Most link hops from a seed.")] = 3,
    include: Annotated[
        list[str] | None, typer.Option(help="Only URLs/paths matching this glob (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Skip URLs/paths matching this glob (repeatable).")
    ] = None,
    render: Annotated[
        RenderMode,
        typer.Option(help="JavaScript rendering: never, auto (app shells only) or always."),
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
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
) -> None:
    """Read web pages, files or folders and add their main content to an index."""
    from ragtune.ingest import IngestSettings
    from ragtune.web.render import allowed_origin

    settings = IngestSettings(
        crawl=crawl,
        scope=scope,
        max_pages=max_pages,
        max_depth=max_depth,
        include=include or [],
        exclude=exclude or [],
        render=render,
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
        engine=engine,
        ray_address=ray_address,
    )
    ingest_and_report(sources, index, settings)


def sync_command(
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
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
) -> None:
    """Revisit an index's sources: re-embed changed pages, remove vanished ones, add new ones.

    Sources are read again with the settings they were ingested with (a crawl
    finds new pages); pages answering 404/410 and deleted files are removed;
    other failures keep the page and are listed. Exits 1 only if nothing
    could be checked.
    """
    from ragtune.sync import sync

    with source_progress("Checking") as progress:
        result = sync(
            index,
            concurrency=concurrency,
            timeout=timeout,
            dry_run=dry_run,
            engine=engine,
            ray_address=ray_address,
            on_event=progress.on_event,
            on_embed=progress.on_embed,
            on_plan=progress.on_plan,
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
    embedded = "" if dry_run else f" ({_count(result.chunks_embedded, 'chunk')} embedded)"
    counts = (
        f"{result.unchanged} unchanged, {result.changed} changed{embedded}, "
        f"{result.removed} removed, {result.added} added, {result.failed} failed{skipped}"
    )
    if dry_run:
        out.print(f"Dry run, nothing written: {index} would have {counts}")
    else:
        out.print(
            f"Synced {index}: {counts}; "
            f"{_count(result.documents, 'document')}, {_count(result.chunks, 'chunk')} "
            "in the index",
        )
    for kind, unvisited in result.unvisited.items():
        out.print(
            f"The crawl stopped at its --{kind.replace('_', '-')}: "
            f"{_count(unvisited['count'], 'link')} left unvisited, not added (--json lists them)"
        )


def extract_command(
    source: Annotated[str, typer.Argument(help="An HTML/Markdown/text file, or an http(s) URL.")],
    format: Annotated[  # noqa: A002 (the option is --format)
        PageFormat, typer.Option("--format", "-f", help="markdown or text.")
    ] = "markdown",
    extractor: Annotated[
        HtmlExtractor,
        typer.Option(
            "--extractor",
            help="How HTML is read: default (trafilatura and ragtune's clean-ups), or the "
            "combining extractor: fast (with resiliparse) or best (also trafilatura's "
            "precision mode and readability where unsure).",
        ),
    ] = "default",
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Show which extractors each block came from (the combining extractor; "
            "implies --extractor fast unless best is given).",
        ),
    ] = False,
) -> None:
    """Print the main content of one page."""
    from ragtune.web.pages import extract_source

    if explain and extractor == "default":
        extractor = "fast"
    page = extract_source(source, extractor)
    if explain and page.blocks:
        for block in page.blocks:
            # "+" marks a block the vote added: ragtune's own reading lacked it.
            mark = " " if "ragtune" in block.sources else "+"
            out.print(plain(f"{mark} [{', '.join(block.sources)}] {block.text}"))
        return
    out.print(page.markdown if format == "markdown" else page.text)
