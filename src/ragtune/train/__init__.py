"""Fine-tuning, preference alignment, merging and GGUF export: the second route to a model
that knows the user's knowledge. Heavy lifting is PEFT's and transformers'; the loop is ours.

    from ragtune.train import finetune, align
    run = finetune("chats.jsonl", output="runs/chats", max_steps=100)   # any TrainConfig field
    run.saved                                   # runs/chats/adapter
    index.as_query_engine(llm=f"hf:{run.base}#adapter={run.saved}")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragtune.train.run import RunOutcome


def finetune(
    data: str | Path | None = None,
    *,
    output: str | Path,
    recipe: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    **settings: Any,
) -> RunOutcome:
    """Supervised fine-tuning (LoRA by default); ``settings`` are TrainConfig fields."""
    return _run("sft", data, output, recipe, resume, overwrite, settings)


def align(
    data: str | Path,
    *,
    output: str | Path,
    recipe: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    **settings: Any,
) -> RunOutcome:
    """DPO on preference pairs (LoRA by default: the frozen base is the reference)."""
    return _run("dpo", data, output, recipe, resume, overwrite, settings)


def _run(
    objective: str,
    data: str | Path | None,
    output: str | Path,
    recipe: str | Path | None,
    resume: bool,
    overwrite: bool,
    settings: dict[str, Any],
) -> RunOutcome:
    from ragtune.train.config import build_config
    from ragtune.train.run import train

    values = {**settings, "data": str(data) if data is not None else None, "output": str(output)}
    config = build_config(Path(recipe) if recipe is not None else None, values)
    return train(config, objective, resume=resume, overwrite=overwrite)


__all__ = ["align", "finetune"]
