"""Training progress on stderr: a Rich bar on a terminal, plain lines elsewhere.

Where stderr is not a terminal (CI, a log, ``2>file``) a bar prints nothing until the
run ends, so a line such as ``Pretraining: 250/2,000 steps, 6.6/s, loss 2.1154, ...``
is written every ``RAGTUNE_PROGRESS_INTERVAL`` seconds (5 by default), as the CLI's
other long jobs do (ragtune.cli.progress).
"""

from __future__ import annotations

import sys
import time
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

from ragtune.terminal import progress_interval


class TrainingProgress:
    """Context manager; ``advance(record)`` after each optimizer step."""

    def __init__(self, label: str, total: int, done: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self.label = label
        self.total = total
        self.done = done
        self._live = sys.stderr.isatty()
        self._interval = progress_interval()
        self._started = time.monotonic()
        self._first = done
        self._printed = self._started
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            disable=not (enabled and self._live),
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
        self.done += 1
        now = time.monotonic()
        if self.enabled and not self._live and now - self._printed >= self._interval:
            self._printed = now
            rate = (self.done - self._first) / max(now - self._started, 1e-9)
            counted = f"{self.label.capitalize()}: {self.done:,}/{self.total:,} steps, {rate:.1f}/s"
            print(", ".join([counted, *parts]), file=sys.stderr, flush=True)
