"""The ragtune command line: a thin shell over the Python API.

Every command reports failure as one line on stderr and a non-zero exit code;
results go to stdout (as JSON with --json) and progress to stderr.

One module per verb group: ``sources`` (ingest, sync, extract), ``query``
(retrieve, ask, chat), ``models`` (models, demo), ``train`` (finetune, align),
``pretrain`` (pretrain, sample), ``tokenizer`` (tokenizer train), ``export`` (merge,
export), ``evaluate`` (eval ...). ``build_app`` below is the one place where commands
are registered; a new command is a function in its group's
module and one line there. What only a command needs (torch, training, the LLM
backends) is imported inside that command, so ``ragtune --help`` stays fast.
"""

from __future__ import annotations

import atexit
import gc

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


def build_app() -> typer.Typer:
    """The ``ragtune`` app with every command; ``--help`` lists them in this order."""
    app = typer.Typer(
        help="Make an open LLM know your own knowledge: ingest, retrieve, ask.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    app.command("ingest")(ingest_command)
    app.command("sync")(sync_command)
    app.command("retrieve")(retrieve_command)
    app.command("ask")(ask_command)
    app.command("chat")(chat_command)
    app.command("extract")(extract_command)
    models = typer.Typer(help="List the models available offline; pull one from the Hub.")
    models.callback(invoke_without_command=True)(models_command)
    models.command("pull")(pull_command)
    app.add_typer(models, name="models")
    app.command("demo")(demo_command)
    app.command("finetune")(finetune_command)
    app.command("align")(align_command)
    app.command("pretrain")(pretrain_command)
    app.command("sample")(sample_command)
    app.command("estimate")(estimate_command)
    tokenizer = typer.Typer(
        help="Train a tokenizer on your own text, for a model trained from scratch.",
        no_args_is_help=True,
    )
    tokenizer.command("train")(tokenizer_train_command)
    app.add_typer(tokenizer, name="tokenizer")
    app.command("merge")(merge_command)
    app.command("export")(export_command)

    evaluate = typer.Typer(
        help="Measure retrieval and answers: quality and speed.", no_args_is_help=True
    )
    evaluate.command("retrieval")(eval_retrieval_command)
    evaluate.command("answers")(eval_answers_command)
    app.add_typer(evaluate, name="eval")
    app.command("compare")(compare_command)
    app.command("serve")(serve_command)
    serve_key = typer.Typer(help="API keys for ragtune serve.", no_args_is_help=True)
    serve_key.command("new")(serve_key_new_command)
    app.add_typer(serve_key, name="serve-key")
    return app


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
