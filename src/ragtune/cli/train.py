"""Commands that train: ``finetune`` and ``align``, thin shells over ragtune.train.run.

Settings come from the defaults, then a YAML recipe (--config), then the flags given.
The training modules (and torch) are imported only when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.text import Text

from ragtune.terminal import err, styled

Opt = typer.Option
MaybeInt = int | None
MaybeFloat = float | None
MaybeBool = bool | None
AlignMethod = Literal["dpo"]


def finetune_command(
    data: Annotated[
        Path | None,
        Opt("--data", "-d", help="Alpaca, ShareGPT, OpenAI messages JSON(L), or text files."),
    ] = None,
    base: Annotated[
        str | None,
        Opt(
            "--base",
            help="Base model: a Hugging Face directory or a .gguf (default: the bundled SmolLM2).",
        ),
    ] = None,
    method: Annotated[str | None, Opt("--method", help="lora (default) or full.")] = None,
    config: Annotated[
        Path | None, Opt("--config", "-c", help="A YAML recipe (see examples/recipes/).")
    ] = None,
    output: Annotated[
        str | None,
        Opt(
            "--output",
            "-o",
            help="Run directory: checkpoints, adapter or model, loss.png, summary.json.",
        ),
    ] = None,
    from_index: Annotated[
        str | None, Opt("--from-index", help="Also train on the documents of this ragtune index.")
    ] = None,
    format: Annotated[
        str | None, Opt("--format", help="auto, alpaca, sharegpt, messages or text.")
    ] = None,
    epochs: Annotated[MaybeFloat, Opt("--epochs")] = None,
    max_steps: Annotated[
        MaybeInt, Opt("--max-steps", help="Stop after this many optimizer steps.")
    ] = None,
    batch_size: Annotated[MaybeInt, Opt("--batch-size")] = None,
    grad_accum: Annotated[
        MaybeInt, Opt("--grad-accum", help="Micro-batches per optimizer step.")
    ] = None,
    learning_rate: Annotated[
        MaybeFloat, Opt("--lr", help="Peak learning rate (default 2e-4 LoRA, 2e-5 full).")
    ] = None,
    max_length: Annotated[MaybeInt, Opt("--max-length", help="Tokens per sequence.")] = None,
    packing: Annotated[
        MaybeBool,
        Opt("--packing/--no-packing", help="Join short examples into full-length sequences."),
    ] = None,
    mask_prompt: Annotated[
        MaybeBool,
        Opt(
            "--mask-prompt/--train-on-prompt",
            help="Loss on replies only (default) or on every token.",
        ),
    ] = None,
    overlong: Annotated[
        str | None,
        Opt(
            "--overlong",
            help="Records longer than --max-length: truncate (default), skip or error.",
        ),
    ] = None,
    eval_fraction: Annotated[
        MaybeFloat, Opt("--eval-fraction", help="Share held out for evaluation.")
    ] = None,
    save_every: Annotated[MaybeInt, Opt("--save-every", help="Checkpoint every N steps.")] = None,
    seed: Annotated[MaybeInt, Opt("--seed")] = None,
    lora_r: Annotated[MaybeInt, Opt("--lora-r")] = None,
    lora_alpha: Annotated[MaybeInt, Opt("--lora-alpha")] = None,
    precision: Annotated[
        str | None,
        Opt("--precision", help="auto, fp32, bf16 or fp16 (auto: fp32 on CPU, bf16 on CUDA)."),
    ] = None,
    qlora: Annotated[
        MaybeBool, Opt("--qlora/--no-qlora", help="4-bit base weights (CUDA only).")
    ] = None,
    gradient_checkpointing: Annotated[
        MaybeBool, Opt("--gradient-checkpointing/--no-gradient-checkpointing")
    ] = None,
    resume: Annotated[
        bool, Opt("--resume", help="Continue the run in --output from its latest checkpoint.")
    ] = False,
    overwrite: Annotated[
        bool, Opt("--overwrite", help="Replace a previous run in --output.")
    ] = False,
) -> None:
    """Fine-tune a model (LoRA or full) on instructions, chats or documents."""
    settings = {
        key: value
        for key, value in locals().items()
        if key not in ("config", "resume", "overwrite")
    }
    _run("sft", config, settings, resume, overwrite)


def align_command(
    data: Annotated[
        Path | None,
        Opt("--data", "-d", help="Preference pairs: TRL prompt/chosen/rejected or ShareGPT pairs."),
    ] = None,
    base: Annotated[
        str | None,
        Opt(
            "--base",
            help="Model to align: a Hugging Face directory or a .gguf (default: the bundled SmolLM2).",
        ),
    ] = None,
    method: Annotated[AlignMethod, Opt("--method", help="dpo (the only method so far).")] = "dpo",
    tune: Annotated[
        str | None, Opt("--tune", help="lora (default: the frozen base is the reference) or full.")
    ] = None,
    config: Annotated[
        Path | None, Opt("--config", "-c", help="A YAML recipe (see examples/recipes/).")
    ] = None,
    output: Annotated[str | None, Opt("--output", "-o")] = None,
    beta: Annotated[MaybeFloat, Opt("--beta", help="DPO temperature (default 0.1).")] = None,
    epochs: Annotated[MaybeFloat, Opt("--epochs")] = None,
    max_steps: Annotated[MaybeInt, Opt("--max-steps")] = None,
    batch_size: Annotated[MaybeInt, Opt("--batch-size")] = None,
    grad_accum: Annotated[MaybeInt, Opt("--grad-accum")] = None,
    learning_rate: Annotated[MaybeFloat, Opt("--lr")] = None,
    max_length: Annotated[MaybeInt, Opt("--max-length")] = None,
    overlong: Annotated[str | None, Opt("--overlong")] = None,
    eval_fraction: Annotated[MaybeFloat, Opt("--eval-fraction")] = None,
    save_every: Annotated[MaybeInt, Opt("--save-every")] = None,
    seed: Annotated[MaybeInt, Opt("--seed")] = None,
    lora_r: Annotated[MaybeInt, Opt("--lora-r")] = None,
    precision: Annotated[str | None, Opt("--precision")] = None,
    resume: Annotated[bool, Opt("--resume")] = False,
    overwrite: Annotated[bool, Opt("--overwrite")] = False,
) -> None:
    """Align a model with preference pairs (DPO)."""
    settings = {
        key: value
        for key, value in locals().items()
        if key not in ("config", "resume", "overwrite", "method", "tune", "beta")
    }
    settings["method"] = tune
    settings["dpo_beta"] = beta
    _run("dpo", config, settings, resume, overwrite)


def _run(
    objective: str, recipe: Path | None, flags: dict[str, Any], resume: bool, overwrite: bool
) -> None:
    from ragtune.train.config import build_config
    from ragtune.train.loop.report import summary_lines
    from ragtune.train.run import train

    if isinstance(flags.get("data"), Path):
        flags["data"] = str(flags["data"])
    config = build_config(recipe, flags)
    try:
        outcome = train(config, objective, resume=resume, overwrite=overwrite)
    except KeyboardInterrupt:
        from ragtune.errors import TrainingError
        from ragtune.train.loop.checkpoints import latest_name

        latest = latest_name(Path(config.output))
        kept = f"the latest checkpoint is {latest}" if latest else "no checkpoint was written yet"
        raise TrainingError(f"interrupted; {kept}; continue with --resume") from None
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_rank() != 0:
        return
    err.print(
        Text.assemble(
            styled("Trained", "bold"),
            f" {outcome.train_examples} examples "
            f"({outcome.eval_examples} held out) from {outcome.encoding.records} records"
            + (f", {outcome.encoding.truncated} truncated" if outcome.encoding.truncated else "")
            + (f", {outcome.encoding.skipped} skipped" if outcome.encoding.skipped else ""),
        )
    )
    for line in summary_lines(outcome.result, outcome.saved, Path(config.output)):
        err.print(f"  {line}")
    hint = f"hf:{outcome.saved}"  # an adapter names the base it was trained on
    err.print(f"Ask it: ragtune ask --llm '{hint}' \"...\" (add --index DIR for RAG)")
