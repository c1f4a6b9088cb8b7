"""The closing figures of a pretraining run (summary.json): loss, speed, MFU, sample."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ragtune.train.loop.report import run_figures
from ragtune.train.pretrain.config import PretrainConfig
from ragtune.train.pretrain.sizes import ModelShape, flops_per_token, parameters


def run_summary(
    config: PretrainConfig,
    shape: ModelShape,
    vocab: int,
    meta: Any,
    result: Any,
    saved: Path,
    peak: float,
    sampled: dict[str, str],
) -> dict[str, Any]:
    per_token = flops_per_token(shape, vocab)
    achieved = per_token * result.tokens_per_second
    val = result.eval_loss_end
    return {
        **run_figures(result, saved),
        "val_loss": val,
        "val_perplexity": round(math.exp(min(val, 50.0)), 3) if val is not None else None,
        "val_loss_start": result.eval_loss_start,
        "final_train_loss": result.final_loss,
        "parameters": parameters(shape, vocab),
        "flops_per_token": per_token,
        "achieved_flops": round(achieved),
        "peak_flops_measured": round(peak),
        "mfu": round(achieved / peak, 4) if peak else None,
        "shape": shape.as_dict(vocab),
        "train_tokens": meta.train_tokens,
        "val_tokens": meta.val_tokens,
        "documents": meta.documents,
        "sample": sampled.get("last"),
        "resumed_from": result.resumed_from,
        "recipe": config.recipe,
    }
