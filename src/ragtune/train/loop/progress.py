"""A Rich progress bar for training steps, showing loss, learning rate and speed."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainingProgress:
    """Context manager; ``advance(record)`` after each optimizer step."""

    def __init__(self, label: str, total: int, done: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            disable=not enabled,
        )
        self._task = self._progress.add_task(label, total=total, completed=done, stats="")

    def __enter__(self) -> TrainingProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)

    def advance(self, record: dict[str, Any]) -> None:
        parts = []
        if "loss" in record:
            parts.append(f"loss {record['loss']:.4f}")
        if "margin" in record:
            parts.append(f"margin {record['margin']:.3f}")
        if "eval_loss" in record:
            parts.append(f"eval {record['eval_loss']:.4f}")
        parts.append(f"lr {record['lr']:.2e}")
        parts.append(f"{record['tokens_per_second']:.0f} tok/s")
        self._progress.update(self._task, advance=1, stats=" ".join(parts))
