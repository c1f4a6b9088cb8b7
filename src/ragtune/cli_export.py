"""``ragtune merge`` and ``ragtune export``: a tuned model out of training, into llama.cpp.

Registered on the main app by ``cli.py``; like every command, failures are RagtuneErrors
that ``cli.main`` prints as one ``error:`` line. Paths are user data: the consoles of
``ragtune.terminal`` print them as they are, without Rich markup or control characters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from ragtune.errors import TrainingError
from ragtune.terminal import err, out

EXPORT_FORMATS = ("gguf",)


def register(app: typer.Typer) -> None:
    """Add the merge and export commands to ``app``."""
    app.command("merge")(merge)
    app.command("export")(export)


def merge(
    adapter_dir: Annotated[Path, typer.Argument(help="A LoRA adapter directory (PEFT).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write.")],
    base: Annotated[
        str | None,
        typer.Option(
            help="Base model: a model directory, a .gguf file or smollm2 "
            "(default: the base recorded in the adapter)."
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a non-empty output directory.")
    ] = False,
) -> None:
    """Fold a LoRA adapter into its base model: one plain model directory.

    Example: ragtune merge ./runs/lora --output ./merged
    """
    from ragtune.train.merge import merge_adapter

    with err.status(Text(f"Merging {adapter_dir} into its base model")):
        merged = merge_adapter(adapter_dir, output, base, overwrite=overwrite)
    out.print(f"Merged model written to {merged}")
    out.print(
        f"Use it: ragtune ask --llm hf:{merged} QUESTION, or export it for llama.cpp: "
        f"ragtune export {merged} --format gguf --output model.gguf",
    )


def export(
    model_dir: Annotated[
        Path, typer.Argument(help="A model directory, or a LoRA adapter (merged on the fly).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .gguf file to write.")],
    format: Annotated[  # noqa: A002 (the option is --format)
        str, typer.Option("--format", help="Output format: gguf.")
    ] = "gguf",
    quant: Annotated[
        str, typer.Option("--quant", help="Tensor type: f16 (default), q8_0 or f32.")
    ] = "f16",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output file.")
    ] = False,
) -> None:
    """Write a model as a GGUF file that the llama.cpp backend runs.

    The output is never one of the model's own files, even with --overwrite.

    Example: ragtune export ./merged --format gguf --quant q8_0 --output tuned.gguf
    """
    from ragtune.train.gguf_export import export_gguf

    if format.lower() not in EXPORT_FORMATS:
        raise TrainingError(f"unknown export format {format!r}; supported: gguf")
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(f"Writing {output.name}", total=None)

        def on_tensor(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        written = export_gguf(model_dir, output, quant, overwrite=overwrite, progress=on_tensor)
    size_mb = written.stat().st_size / 1e6
    out.print(f"Wrote {written} ({size_mb:.1f} MB, {quant})")
    out.print(f'Use it: ragtune ask --llm {written} "QUESTION"')
