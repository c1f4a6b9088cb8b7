"""The one progress display of the CLI: live bars on stderr, gone when the work ends.

Statuses and descriptions carry URLs and file names, so both are shown as text,
never read as Rich markup, and the console strips terminal control characters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

from ragtune.terminal import err, printable
from ragtune.web.crawl import CrawlEvent

# What a long job calls as it goes: (items done, items in all).
CountHook = Callable[[int, int], None]


def _bars() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}", markup=False),
        console=err,
        transient=True,
    )


class SourceProgress:
    """Two bars for reading sources into an index: one tick per source read (its
    status and URL beside it), then the chunks embedded, shown once embedding starts.

    Pass ``on_event`` and ``on_embed`` to ``ragtune.ingest.ingest`` or ``ragtune.sync.sync``.
    """

    def __init__(self, progress: Progress, reading: str) -> None:
        self._progress = progress
        self._reading = progress.add_task(reading, total=None, status="")
        self._embedding = progress.add_task("Embedding", total=None, status="", visible=False)

    def on_event(self, event: CrawlEvent) -> None:
        status = printable(f"{event.status} {event.url[-60:]}")
        self._progress.update(self._reading, advance=1, status=status)

    def on_embed(self, done: int, total: int) -> None:
        self._progress.update(
            self._embedding, completed=done, total=total, status="chunks", visible=True
        )


@contextmanager
def source_progress(reading: str) -> Iterator[SourceProgress]:
    """Show sources being read (the first bar is labelled ``reading``) and embedded."""
    with _bars() as progress:
        yield SourceProgress(progress, reading)


@contextmanager
def count_progress(description: str, total: int | None = None) -> Iterator[CountHook]:
    """Show one bar labelled ``description``; the hook it yields moves it."""
    with _bars() as progress:
        task = progress.add_task(description, total=total, status="")

        def on_count(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield on_count
