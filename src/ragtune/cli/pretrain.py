"""Commands that train from scratch: ``pretrain`` and ``sample``, thin shells over
ragtune.train.pretrain. Settings: defaults, then a YAML recipe (--config), then flags.
torch and the training modules are imported only when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from ragtune.terminal import err, out, styled

Opt = typer.Option
MaybeInt = int | None
MaybeFloat = float | None


def pretrain_command(
    data: Annotated[
        Path | None, Opt("--data", "-d", help='Text: a .txt/.md file, a folder, JSONL {"text"}.')
    ] = None,
    from_index: Annotated[
        str | None, Opt("--from-index", help="Also train on the documents of this ragtune index.")
    ] = None,
    output: Annotated[
        str | None,
        Opt("--output", "-o", help="Run directory: model, tokenizer, checkpoints, loss.png."),
    ] = None,
    config: Annotated[
        Path | None, Opt("--config", "-c", help="A YAML recipe (see examples/recipes/).")
    ] = None,
    tokenizer: Annotated[
        str | None,
        Opt("--tokenizer", help="bpe (default) or char, trained on the text; or a directory."),
    ] = None,
    vocab_size: Annotated[MaybeInt, Opt("--vocab-size", help="For bpe (default 8192).")] = None,
    size: Annotated[
        str | None, Opt("--size", help="A preset: 1m, 5m, 15m, 45m, 125m (see --list-sizes).")
    ] = None,
    layers: Annotated[MaybeInt, Opt("--layers")] = None,
    heads: Annotated[MaybeInt, Opt("--heads")] = None,
    kv_heads: Annotated[MaybeInt, Opt("--kv-heads")] = None,
    dim: Annotated[MaybeInt, Opt("--dim", help="Model width.")] = None,
    context: Annotated[MaybeInt, Opt("--context", help="Tokens per training window.")] = None,
    batch_size: Annotated[MaybeInt, Opt("--batch-size")] = None,
    grad_accum: Annotated[MaybeInt, Opt("--grad-accum")] = None,
    max_steps: Annotated[
        MaybeInt, Opt("--max-steps", help="Optimizer steps (default 2000).")
    ] = None,
    learning_rate: Annotated[MaybeFloat, Opt("--lr", help="Peak learning rate (1e-3).")] = None,
    min_lr: Annotated[MaybeFloat, Opt("--min-lr", help="Where the cosine ends (1e-4).")] = None,
    warmup_steps: Annotated[MaybeInt, Opt("--warmup-steps")] = None,
    eval_every: Annotated[
        MaybeInt, Opt("--eval-every", help="Validation loss every N steps (250).")
    ] = None,
    eval_batches: Annotated[MaybeInt, Opt("--eval-batches")] = None,
    sample_every: Annotated[
        MaybeInt, Opt("--sample-every", help="Print a sample every N steps.")
    ] = None,
    sample_prompt: Annotated[str | None, Opt("--sample-prompt")] = None,
    save_every: Annotated[MaybeInt, Opt("--save-every", help="Checkpoint every N steps.")] = None,
    seed: Annotated[MaybeInt, Opt("--seed")] = None,
    precision: Annotated[
        str | None, Opt("--precision", help="auto, fp32, bf16 or fp16 (auto: bf16 on CUDA).")
    ] = None,
    compile: Annotated[
        str | None, Opt("--compile", help="auto (CUDA only), on or off: torch.compile.")
    ] = None,
    list_sizes: Annotated[
        bool, Opt("--list-sizes", help="List the size presets and exit.")
    ] = False,
    resume: Annotated[
        bool, Opt("--resume", help="Continue the run in --output from its latest checkpoint.")
    ] = False,
    overwrite: Annotated[
        bool, Opt("--overwrite", help="Replace a previous run in --output.")
    ] = False,
) -> None:
    """Train a small Llama model from scratch on your own text."""
    if list_sizes:
        _list_sizes(vocab_size)
        return
    settings = {
        key: value
        for key, value in locals().items()
        if key not in ("config", "resume", "overwrite", "list_sizes")
    }
    if isinstance(settings.get("data"), Path):
        settings["data"] = str(settings["data"])

    from ragtune.train.config import build_settings
    from ragtune.train.pretrain.config import PretrainConfig

    run_config = build_settings(config, settings, PretrainConfig)
    _run(run_config, resume, overwrite)


def _run(config: Any, resume: bool, overwrite: bool) -> None:
    from ragtune.errors import TrainingError
    from ragtune.train.loop.checkpoints import latest_name
    from ragtune.train.pretrain.run import pretrain

    def show_sample(step: int, text: str) -> None:
        err.print(Text.assemble(styled(f"sample at step {step}:", "bold"), "\n", text))

    try:
        outcome = pretrain(config, resume=resume, overwrite=overwrite, on_sample=show_sample)
    except KeyboardInterrupt:
        latest = latest_name(Path(config.output))
        kept = f"the latest checkpoint is {latest}" if latest else "no checkpoint was written yet"
        raise TrainingError(f"interrupted; {kept}; continue with --resume") from None
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_rank() != 0:
        return
    summary = outcome.summary
    for line in _summary_lines(summary, Path(config.output)):
        out.print(Text(line))
    out.print(Text(f'Sample it: ragtune sample {outcome.saved} --prompt "..."'))


def _summary_lines(summary: dict[str, Any], output: Path) -> list[str]:
    from ragtune.train.pretrain.sizes import human

    minutes, seconds = divmod(summary["seconds"], 60)
    shape = summary["shape"]
    lines = [
        f"Pretrained {human(summary['parameters'])} parameters "
        f"({shape['layers']} layers, {shape['heads']} heads, {shape['dim']} wide, "
        f"context {shape['context']}, vocabulary {shape['vocab']:,})",
        f"  steps        {summary['steps']}"
        + (f" (resumed from {summary['resumed_from']})" if summary["resumed_from"] else ""),
        f"  time         {int(minutes)} min {seconds:.1f} s",
        f"  tokens/s     {summary['tokens_per_second']:,.0f} ({summary['tokens']:,} tokens, "
        f"{summary['threads']} threads on {summary['device']})",
    ]
    if summary.get("mfu") is not None:
        lines.append(
            f"  MFU          {summary['mfu']:.1%} of a measured "
            f"{human(summary['peak_flops_measured'], 'FLOP/s')} matmul peak"
        )
    if summary["val_loss"] is not None:
        lines.append(
            f"  val loss     {summary['val_loss']:.4f} (perplexity {summary['val_perplexity']:.2f})"
        )
    lines.append(f"  saved        {summary['saved']}")
    lines.append(f"  loss curve   {output / 'loss.png'}")
    return lines


def _list_sizes(vocab_size: int | None) -> None:
    from rich.table import Table

    from ragtune.train.pretrain.config import DEFAULT_BPE_VOCAB
    from ragtune.train.pretrain.sizes import (
        PRESETS,
        flops_per_token,
        human,
        parameters,
        training_bytes,
    )

    vocab = vocab_size or DEFAULT_BPE_VOCAB
    table = Table(title=f"Sizes (vocabulary {vocab:,}; batch 12 for memory)")
    for column in (
        "size",
        "layers",
        "heads",
        "dim",
        "context",
        "parameters",
        "FLOPs/token",
        "memory",
    ):
        table.add_column(column, justify="left" if column == "size" else "right")
    for name, shape in PRESETS.items():
        table.add_row(
            name,
            str(shape.layers),
            str(shape.heads),
            str(shape.dim),
            str(shape.context),
            human(parameters(shape, vocab)),
            human(flops_per_token(shape, vocab)),
            f"{training_bytes(shape, vocab, 12) / 2**30:.1f} GiB",
        )
    out.print(table)


def sample_command(
    model: Annotated[Path, typer.Argument(help="A model directory (RUN/model).")],
    prompt: Annotated[str, Opt("--prompt", "-p", help="Text to continue (default: none).")] = "",
    max_tokens: Annotated[int, Opt("--max-tokens", "-n", help="Tokens to generate.")] = 200,
    temperature: Annotated[float, Opt("--temperature", "-t", help="0 for greedy decoding.")] = 0.8,
    top_k: Annotated[int, Opt("--top-k", help="0 for the whole vocabulary.")] = 200,
    seed: Annotated[int, Opt("--seed")] = 1337,
) -> None:
    """Continue a prompt with a base model (one without a chat template)."""
    from ragtune.errors import TrainingError

    if max_tokens <= 0:
        raise TrainingError(f"--max-tokens must be positive, not {max_tokens}")
    if temperature < 0 or top_k < 0:
        raise TrainingError("--temperature and --top-k must be 0 or more")
    from ragtune.train.pretrain.sample import load_for_sampling, sample_text

    network, tokenizer = load_for_sampling(model)
    text = sample_text(network, tokenizer, prompt, max_tokens, temperature, top_k, seed)
    out.print(Text(prompt + text), soft_wrap=True)
