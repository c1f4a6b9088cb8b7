"""``ragtune estimate``: what a route would cost before running it, a thin shell over
ragtune.train.estimate. The library is imported only when the command runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ragtune.errors import EstimateError
from ragtune.terminal import out

Opt = typer.Option
MaybeInt = int | None
MaybeFloat = float | None


def estimate_command(
    route: Annotated[str, typer.Argument(help="rag, lora, full or pretrain.")],
    data: Annotated[
        list[Path] | None,
        typer.Argument(help="The data: files/folders (rag), a dataset, or text (pretrain)."),
    ] = None,
    model: Annotated[
        str | None,
        Opt(
            "--model",
            "-m",
            help="A model directory, a .gguf, a public shape (7b, 8b, 13b, 70b, "
            "llama3-8b, qwen2.5-7b ...) or a size (1m ... 125m). Default: SmolLM2 "
            "(rag, lora, full) or the recipe's size (pretrain).",
        ),
    ] = None,
    params: Annotated[
        MaybeFloat,
        Opt("--params", help="A parameter count (7e9): Llama-2's proportions are assumed."),
    ] = None,
    tokens: Annotated[
        MaybeFloat,
        Opt("--tokens", help="The data's tokens (2e6), instead of reading data."),
    ] = None,
    config: Annotated[
        Path | None, Opt("--config", "-c", help="The run's YAML recipe (finetune or pretrain).")
    ] = None,
    from_index: Annotated[
        str | None, Opt("--from-index", help="Train on this index's documents.")
    ] = None,
    epochs: Annotated[MaybeFloat, Opt("--epochs")] = None,
    max_steps: Annotated[MaybeInt, Opt("--max-steps")] = None,
    batch_size: Annotated[MaybeInt, Opt("--batch-size")] = None,
    grad_accum: Annotated[MaybeInt, Opt("--grad-accum")] = None,
    max_length: Annotated[
        MaybeInt, Opt("--max-length", help="Fine-tuning: tokens a record.")
    ] = None,
    eval_every: Annotated[MaybeInt, Opt("--eval-every")] = None,
    eval_batches: Annotated[MaybeInt, Opt("--eval-batches", help="Pretraining.")] = None,
    save_every: Annotated[MaybeInt, Opt("--save-every")] = None,
    lora_r: Annotated[MaybeInt, Opt("--lora-r")] = None,
    qlora: Annotated[bool | None, Opt("--qlora/--no-qlora", help="4-bit base (GPU).")] = None,
    gradient_checkpointing: Annotated[
        bool | None, Opt("--gradient-checkpointing/--no-gradient-checkpointing")
    ] = None,
    size: Annotated[str | None, Opt("--size", help="Pretraining: a size preset.")] = None,
    layers: Annotated[MaybeInt, Opt("--layers")] = None,
    heads: Annotated[MaybeInt, Opt("--heads")] = None,
    kv_heads: Annotated[MaybeInt, Opt("--kv-heads")] = None,
    dim: Annotated[MaybeInt, Opt("--dim")] = None,
    context: Annotated[MaybeInt, Opt("--context")] = None,
    tokenizer: Annotated[
        str | None, Opt("--tokenizer", help="Pretraining: bpe, char or a directory.")
    ] = None,
    vocab_size: Annotated[MaybeInt, Opt("--vocab-size")] = None,
    chunk_size: Annotated[MaybeInt, Opt("--chunk-size", help="RAG: tokens a chunk.")] = None,
    top_k: Annotated[int, Opt("--top-k", help="RAG: chunks in a prompt.")] = 5,
    answer_tokens: Annotated[int, Opt("--answer-tokens", help="RAG: tokens an answer.")] = 128,
    device: Annotated[
        str,
        Opt(
            "--device",
            help="this (measured once, cached) or a GPU: t4, a10g, l4, rtx4090, l40s, "
            "a100-40g, a100-80g, h100, h200.",
        ),
    ] = "this",
    gpus: Annotated[int, Opt("--gpus", help="GPUs of the profile.")] = 1,
    mfu: Annotated[MaybeFloat, Opt("--mfu", help="Assumed MFU on a GPU (default 0.4).")] = None,
    price_per_hour: Annotated[
        MaybeFloat, Opt("--price-per-hour", help="US$ an hour, all GPUs together.")
    ] = None,
    threads: Annotated[
        MaybeInt, Opt("--threads", help="Torch threads on this machine (default: the run's).")
    ] = None,
    as_json: Annotated[bool, Opt("--json", help="Print the estimate as JSON.")] = False,
) -> None:
    """What a route would cost before running it: FLOPs, memory, time, money."""
    from ragtune.train.estimate.routes import Request, estimate

    settings = {
        "from_index": from_index,
        "epochs": epochs,
        "max_steps": max_steps,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "max_length": max_length,
        "eval_every": eval_every,
        "eval_batches": eval_batches,
        "save_every": save_every,
        "lora_r": lora_r,
        "qlora": qlora,
        "gradient_checkpointing": gradient_checkpointing,
        "size": size,
        "layers": layers,
        "heads": heads,
        "kv_heads": kv_heads,
        "dim": dim,
        "context": context,
        "tokenizer": tokenizer,
        "vocab_size": vocab_size,
        "chunk_size": chunk_size,
    }
    request = Request(
        route=route,
        data=list(data or []),
        model=model,
        params=params,
        tokens=_token_count(tokens),
        recipe=config,
        settings=settings,
        device=device,
        gpus=gpus,
        mfu=mfu,
        price_per_hour=price_per_hour,
        threads=threads,
        top_k=top_k,
        answer_tokens=answer_tokens,
    )
    result = estimate(request)
    if as_json:
        out.print_json(json.dumps(result))
        return
    _print_table(result)


def _token_count(tokens: float | None) -> int | None:
    """--tokens as a whole number (``2e6`` is accepted); routes checks it is positive."""
    if tokens is None:
        return None
    if not math.isfinite(tokens):
        raise EstimateError(f"--tokens must be a positive number, not {tokens}")
    return round(tokens)


def _print_table(result: dict[str, object]) -> None:
    from rich.table import Table

    from ragtune.train.estimate.report import rows

    table = Table(title=f"ragtune estimate: {result['route']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("estimate")
    for what, value in rows(result):
        table.add_row(Text(what), Text(value))
    out.print(table)
