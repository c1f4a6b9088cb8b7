"""The loss-curve PNG and the closing summary of a training run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.atomic import StagedFile


@dataclass
class RunResult:
    """What the closing summary reports."""

    steps: int
    seconds: float  # the whole loop, evaluation and checkpoints included
    train_seconds: float  # optimizer steps only: what tokens/s is measured over
    tokens: int
    peak_rss_mb: float
    peak_gpu_mb: float | None
    final_loss: float | None
    eval_loss_start: float | None
    eval_loss_end: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.train_seconds if self.train_seconds > 0 else 0.0


def run_figures(result: RunResult, saved: Path) -> dict[str, Any]:
    """What every run's summary.json starts with (fine-tuning's and pretraining's)."""
    return {
        "saved": str(saved),
        "steps": result.steps,
        "seconds": round(result.seconds, 2),
        "train_seconds": round(result.train_seconds, 2),
        "tokens": result.tokens,
        "tokens_per_second": round(result.tokens_per_second, 1),
        "peak_rss_mb": round(result.peak_rss_mb, 1),
        "peak_gpu_mb": result.peak_gpu_mb,
    }


def plot_losses(history: list[dict[str, Any]], path: Path) -> None:
    """Training loss per step (with a running mean) and evaluation loss where measured."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display here, and no GUI toolkit import
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        steps, losses = zip(*train, strict=True)
        axes.plot(steps, losses, color="#9ab", linewidth=1, label="train loss")
        window = max(1, len(losses) // 20)
        smooth = [
            sum(losses[max(0, i - window + 1) : i + 1])
            / len(losses[max(0, i - window + 1) : i + 1])
            for i in range(len(losses))
        ]
        axes.plot(steps, smooth, color="#1f5f9f", linewidth=2, label=f"mean of {window}")
    if evals:
        steps, losses = zip(*evals, strict=True)
        axes.plot(steps, losses, "o-", color="#d95f02", label="eval loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    try:
        with StagedFile(path) as staged:  # a viewer open on loss.png never sees half of one
            figure.savefig(staged, format="png")
    finally:
        plt.close(figure)


def summary_lines(result: RunResult, saved: Path, output: Path) -> list[str]:
    minutes, seconds = divmod(result.seconds, 60)
    lines = [
        f"steps        {result.steps}"
        + (f" (resumed from {result.resumed_from})" if result.resumed_from else ""),
        f"time         {int(minutes)} min {seconds:.1f} s",
        f"tokens/s     {result.tokens_per_second:,.0f} ({result.tokens:,} tokens)",
        f"peak memory  {result.peak_rss_mb:,.0f} MB RSS"
        + (f", {result.peak_gpu_mb:,.0f} MB GPU" if result.peak_gpu_mb is not None else ""),
    ]
    if result.final_loss is not None:
        lines.append(f"train loss   {result.final_loss:.4f} (last step)")
    if result.eval_loss_end is not None:
        start = result.eval_loss_start
        before = f"{start:.4f} -> " if start is not None else ""
        lines.append(f"eval loss    {before}{result.eval_loss_end:.4f}")
    for key, value in result.extra.items():
        lines.append(f"{key:<12} {value:.4f}")
    lines.append(f"saved        {saved}")
    lines.append(f"loss curve   {output / 'loss.png'}")
    return lines
