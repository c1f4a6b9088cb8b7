"""The ragtune command line: a thin shell over the Python API.

Every command reports failure as one line on stderr and a non-zero exit code;
results go to stdout (as JSON with --json) and progress to stderr.

One module per verb group: ``sources`` (ingest, sync, extract), ``query``
(retrieve, ask, chat), ``models`` (models, demo), ``train`` (finetune, align),
``pretrain`` (pretrain, sample), ``tokenizer`` (tokenizer train), ``export`` (merge,
export), ``evaluate`` (eval ...). ``build_app`` below is the one place where commands
are registered; a new command is a function in its group's module, one line there
and its examples in ``EXAMPLES``. What only a command needs (torch, training, the LLM
backends) is imported inside that command, so ``ragtune --help`` stays fast.
"""

from __future__ import annotations

import atexit
import gc
import inspect
from collections.abc import Callable
from typing import Annotated

import typer

from ragtune.cli.compare import compare_command
from ragtune.cli.errors import run_app
from ragtune.cli.estimate import estimate_command
from ragtune.cli.evaluate import eval_answers_command, eval_retrieval_command
from ragtune.cli.export import export_command, merge_command
from ragtune.cli.models import demo_command, models_command, pull_command
from ragtune.cli.notices import show_notices
from ragtune.cli.pretrain import pretrain_command, sample_command
from ragtune.cli.query import ask_command, chat_command, retrieve_command
from ragtune.cli.serve import serve_command, serve_key_new_command
from ragtune.cli.sources import extract_command, ingest_command, sync_command
from ragtune.cli.tokenizer import tokenizer_train_command
from ragtune.cli.train import align_command, finetune_command
from ragtune.terminal import out
from ragtune.version import __version__

# The examples at the end of each command's --help, by command path ("" is ragtune
# itself). Real command lines on what the repository ships (examples/), the demo shop
# (ragtune demo --serve) and an index ./idx made by the first one: tests/test_cli_help.py
# parses every line against this app, as tests/test_docs.py does the docs' commands.
# Rich would wrap a line longer than the help's 80 columns and break it for pasting,
# hence the "\" continuations (the test holds every line to 76 characters).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "": (
        "ragtune demo --serve --port 8000",
        "ragtune ingest http://127.0.0.1:8000/products --crawl --index ./idx",
        'ragtune ask "What is the flavor of the dark energy potion?" --index ./idx',
    ),
    "ingest": (
        "ragtune ingest http://127.0.0.1:8000/products --crawl --index ./idx",
        "ragtune ingest examples/docs --exclude 'drafts/*' --index ./idx",
    ),
    "sync": (
        "ragtune sync --index ./idx --dry-run",
        "ragtune sync --index ./idx --json",
    ),
    "retrieve": (
        'ragtune retrieve "price of the griffin kite" --index ./idx --top-k 3',
        'ragtune retrieve "hot sauce" --index ./idx --mode keyword --json',
    ),
    "ask": (
        'ragtune ask "What is the flavor of the dark energy potion?" --index ./idx',
        'ragtune ask "Who illustrated the atlas?" --index ./idx --answer extract',
    ),
    "chat": (
        "ragtune chat --index ./idx",
        "ragtune chat --index ./idx --llm hf:runs/alpaca/adapter --top-k 3",
    ),
    "extract": (
        "ragtune extract http://127.0.0.1:8000/products/griffin-kite --format text",
        "ragtune extract examples/shop/site/about.html --explain",
    ),
    "models": (
        "ragtune models",
        "ragtune models pull Qwen/Qwen2.5-0.5B-Instruct-GGUF \\",
        "    qwen2.5-0.5b-instruct-q4_k_m.gguf",
    ),
    "models pull": (
        "ragtune models pull Qwen/Qwen2.5-0.5B-Instruct-GGUF \\",
        "    qwen2.5-0.5b-instruct-q4_k_m.gguf",
    ),
    "demo": (
        "ragtune demo",
        "ragtune demo --serve --port 8000",
    ),
    "finetune": (
        "ragtune finetune --data examples/data/alpaca.json --max-steps 50 \\",
        "    -o runs/alpaca",
        "ragtune finetune --from-index ./idx \\",
        "    -c examples/recipes/knowledge-from-index.yaml -o runs/shop",
    ),
    "align": ("ragtune align --data examples/data/dpo.json --max-steps 20 -o runs/dpo",),
    "pretrain": (
        "ragtune pretrain --list-sizes",
        "ragtune pretrain -c examples/recipes/pretrain-shakespeare-char.yaml \\",
        "    -d examples/data/corpus.txt -o runs/scratch",
    ),
    "sample": ('ragtune sample runs/scratch/model --prompt "The potion" -n 200',),
    "estimate": (
        "ragtune estimate rag examples/docs",
        "ragtune estimate lora examples/data/alpaca.json --device t4",
        "ragtune estimate pretrain --params 7e9 --tokens 2e12 --device h100 --gpus 8",
    ),
    "tokenizer": (
        "ragtune tokenizer train --data examples/data/corpus.txt -o runs/tok",
        "ragtune tokenizer train --from-index ./idx --vocab-size 4096 -o runs/tok",
    ),
    "tokenizer train": (
        "ragtune tokenizer train --data examples/data/corpus.txt -o runs/tok",
        "ragtune tokenizer train --from-index ./idx --vocab-size 4096 -o runs/tok",
    ),
    "merge": ("ragtune merge runs/alpaca/adapter --output runs/alpaca/merged",),
    "export": (
        "ragtune export runs/alpaca/merged --format gguf --quant q8_0 \\",
        "    --output alpaca-q8_0.gguf",
    ),
    "eval": (
        "ragtune eval retrieval --qa examples/data/qa.json --index ./idx",
        "ragtune eval answers --qa examples/data/qa.json --index ./idx --limit 20",
    ),
    "eval retrieval": (
        "ragtune eval retrieval --qa examples/data/qa.json --index ./idx",
        "ragtune eval retrieval --qa examples/data/qa.json --index ./idx --json",
    ),
    "eval answers": (
        "ragtune eval answers --qa examples/data/qa.json --index ./idx --limit 20",
        "ragtune eval answers --qa examples/data/qa.json --index ./idx \\",
        "    --answer extract --markdown answers.md",
    ),
    "compare": (
        "ragtune compare --index ./idx -o report --budget 20m",
        "ragtune compare --index ./idx -o report --routes base,rag --budget 5m",
    ),
    "serve": (
        "ragtune serve --index ./idx",
        "ragtune serve --index shop=./idx --port 8080 --parallel 2",
        "ragtune serve --index ./idx --host 0.0.0.0 --api-key-file keys.txt",
    ),
    "serve-key": ("ragtune serve-key new --file keys.txt --name laptop",),
    "serve-key new": ("ragtune serve-key new --file keys.txt --name laptop",),
}


def examples(path: str) -> str:
    """The ``--help`` epilog of the command at ``path``: its examples, one a line.

    typer prints an epilog with Rich markup read and single line breaks kept, so each
    example keeps its own line; no example holds a ``[`` that markup would eat."""
    lines = EXAMPLES[path]
    commands = sum(not line.startswith(" ") for line in lines)  # not the continued lines
    return ("Example:" if commands == 1 else "Examples:") + "\n\n" + "\n".join(lines)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"ragtune {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            # Eager: answered before a command is looked for or a required option missed.
            is_eager=True,
            callback=_print_version,
            help="Print ragtune's version and exit.",
        ),
    ] = False,
) -> None:
    """Make an open LLM know your own knowledge: ingest, retrieve, ask."""


def build_app() -> typer.Typer:
    """The ``ragtune`` app with every command; ``--help`` lists them in this order."""
    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
    app.callback(epilog=examples(""))(_root)
    _add(app, "ingest", ingest_command)
    _add(app, "sync", sync_command)
    _add(app, "retrieve", retrieve_command)
    _add(app, "ask", ask_command)
    _add(app, "chat", chat_command)
    _add(app, "extract", extract_command)
    models = _group(
        "models", "List the models available offline; pull one from the Hub.", no_args_is_help=False
    )
    models.callback(invoke_without_command=True, epilog=examples("models"))(models_command)
    _add(models, "models pull", pull_command)
    app.add_typer(models, name="models")
    _add(app, "demo", demo_command)
    _add(app, "finetune", finetune_command)
    _add(app, "align", align_command)
    _add(app, "pretrain", pretrain_command)
    _add(app, "sample", sample_command)
    _add(app, "estimate", estimate_command)
    tokenizer = _group(
        "tokenizer", "Train a tokenizer on your own text, for a model trained from scratch."
    )
    _add(tokenizer, "tokenizer train", tokenizer_train_command)
    app.add_typer(tokenizer, name="tokenizer")
    _add(app, "merge", merge_command)
    _add(app, "export", export_command)
    evaluate = _group("eval", "Measure retrieval and answers: quality and speed.")
    _add(evaluate, "eval retrieval", eval_retrieval_command)
    _add(evaluate, "eval answers", eval_answers_command)
    app.add_typer(evaluate, name="eval")
    _add(app, "compare", compare_command)
    _add(app, "serve", serve_command)
    serve_key = _group("serve-key", "API keys for ragtune serve.")
    _add(serve_key, "serve-key new", serve_key_new_command)
    app.add_typer(serve_key, name="serve-key")
    return app


def _add(group: typer.Typer, path: str, function: Callable[..., None]) -> None:
    """Register ``function`` as the command at ``path`` (its last word in ``group``), with
    its examples and its docstring as help, each paragraph on one line: typer's Rich help
    keeps a docstring's line breaks, and Rich then wraps those lines again at the
    terminal's width, leaving a stray word on a line of its own."""
    help_text = "\n\n".join(
        " ".join(paragraph.split()) for paragraph in (inspect.getdoc(function) or "").split("\n\n")
    )
    name = path.rsplit(" ", 1)[-1]
    group.command(name, help=help_text, epilog=examples(path))(function)


def _group(path: str, help_text: str, *, no_args_is_help: bool = True) -> typer.Typer:
    # Without a subcommand a group prints its help (exit 2), as ``ragtune`` alone does;
    # ``models`` alone lists the models instead.
    return typer.Typer(help=help_text, epilog=examples(path), no_args_is_help=no_args_is_help)


app = build_app()


def main() -> None:
    """The ``ragtune`` console script and ``python -m ragtune``."""
    show_notices()
    # At exit Python's last garbage collections walk every object the libraries made
    # (LanceDB alone defines some 150 pydantic models), only to free memory the process
    # is about to give back: frozen, they are skipped. Measured: 0.5 s of CPU of a
    # 2.7 s retrieve (bench/cli_startup.py). atexit, so a test calling main() in its
    # own process freezes nothing until that process ends.
    atexit.unregister(gc.freeze)  # once, however often main() runs in one process
    atexit.register(gc.freeze)
    run_app(app)
