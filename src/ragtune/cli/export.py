"""Commands that package a model: ``merge`` and ``export``, out of training into llama.cpp.

Like every command, failures are RagtuneErrors that ``ragtune.cli.main`` prints as one
``error:`` line. Paths are user data: the consoles of ``ragtune.terminal`` print them as
they are, without Rich markup or control characters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.text import Text

from ragtune.cli.progress import count_progress
from ragtune.terminal import err, out

ExportFormat = Literal["gguf"]


def merge_command(
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
    """Fold a LoRA adapter into its base model: one plain model directory."""
    from ragtune.train.export.merge import merge_adapter

    with err.status(Text(f"Merging {adapter_dir} into its base model")):
        merged = merge_adapter(adapter_dir, output, base, overwrite=overwrite)
    out.print(f"Merged model written to {merged}")
    out.print(
        f"Use it: ragtune ask --llm hf:{merged} QUESTION, or export it for llama.cpp: "
        f"ragtune export {merged} --format gguf --output model.gguf",
    )


def export_command(
    model_dir: Annotated[
        Path, typer.Argument(help="A model directory, or a LoRA adapter (merged on the fly).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .gguf file to write.")],
    format: Annotated[  # noqa: A002 (the option is --format)
        ExportFormat, typer.Option("--format", case_sensitive=False, help="Output format: gguf.")
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
    """
    from ragtune.train.export.gguf_export import export_gguf

    with count_progress(f"Writing {output.name}") as on_tensor:
        written = export_gguf(model_dir, output, quant, overwrite=overwrite, progress=on_tensor)
    size_mb = written.stat().st_size / 1e6
    out.print(f"Wrote {written} ({size_mb:.1f} MB, {quant})")
    out.print(f'Use it: ragtune ask --llm {written} "QUESTION"')
