"""The one progress display of the CLI, on stderr: live bars on a terminal, plain lines
elsewhere.

On a terminal, Rich bars (counts, time left) vanish when the work ends. Where
stderr is not a terminal (CI, a log, ``2>file``) a bar would print nothing for
minutes, so a line such as ``Embedding: 512/2,034 chunks, 8.1/s, about 3 min
left`` is written every few seconds instead (``RAGTUNE_PROGRESS_INTERVAL``
seconds, 5 by default), once the work has counted something: a command that
fails before that still prints its one ``error:`` line alone.

Statuses and descriptions carry URLs and file names, so both are shown as text,
never read as Rich markup, and the console strips terminal control characters.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
)

from ragtune.terminal import err, printable, progress_interval

if TYPE_CHECKING:  # the web stack loads only in the commands that crawl
    from ragtune.web.crawl import CrawlEvent

# What a long job calls as it goes: (items done, items in all, None while unknown).
CountHook = Callable[[int, int | None], None]


@dataclass
class _Count:
    """One piece of work as the plain lines report it."""

    description: str
    unit: str
    total: int | None = None
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    visible: bool = True
    finished: bool = False  # its lines stop; a bar stays as it is

    def line(self) -> str:
        counted = f"{self.done:,}/{self.total:,}" if self.total is not None else f"{self.done:,}"
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.description}: {counted} {self.unit}", f"{rate:.1f}/s"]
        if self.total is not None and rate > 0 and self.done < self.total:
            parts.append(f"about {_duration((self.total - self.done) / rate)} left")
        return ", ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


class _Display:
    """Counts of work in progress, shown as Rich bars or as plain lines."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self._bars = _bars() if live else None
        self._counts: dict[int, _Count] = {}
        self._ids: dict[int, int] = {}  # count -> Rich task id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._printer: threading.Thread | None = None

    def add(self, description: str, unit: str, total: int | None, visible: bool = True) -> int:
        key = len(self._counts)
        self._counts[key] = _Count(description, unit, total, visible=visible)
        if self._bars is not None:
            self._ids[key] = self._bars.add_task(
                description, total=total, status="", visible=visible
            )
        return key

    def update(
        self,
        key: int,
        *,
        advance: int = 0,
        done: int | None = None,
        total: int | None = None,
        status: str | None = None,
        visible: bool | None = None,
    ) -> None:
        with self._lock:
            count = self._counts[key]
            count.done = count.done + advance if done is None else done
            if total is not None:
                count.total = total
            if visible is not None:
                if visible and not count.visible:
                    count.started = time.monotonic()  # its rate counts from when it starts
                count.visible = visible
        if self._bars is not None:
            fields: dict[str, object] = {"completed": count.done, "total": count.total}
            if status is not None:
                fields["status"] = status
            if visible is not None:
                fields["visible"] = visible
            self._bars.update(self._ids[key], **fields)  # type: ignore[arg-type]

    def finish(self, key: int) -> None:
        with self._lock:
            self._counts[key].finished = True

    def set_unknown_total(self, key: int) -> None:
        with self._lock:
            count = self._counts[key]
            count.total = None
        if self._bars is not None:
            # A Rich task's total cannot go back to unknown: the bar is made again.
            task = next(t for t in self._bars.tasks if t.id == self._ids[key])
            self._bars.remove_task(task.id)
            self._ids[key] = self._bars.add_task(
                count.description,
                total=None,
                completed=count.done,
                visible=count.visible,
                status=task.fields.get("status", ""),
            )

    def __enter__(self) -> _Display:
        if self._bars is not None:
            self._bars.start()
        else:
            self._printer = threading.Thread(target=self._print_lines, daemon=True)
            self._printer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bars is not None:
            self._bars.stop()
        self._stop.set()
        if self._printer is not None:
            self._printer.join()

    def _print_lines(self) -> None:
        interval = progress_interval()
        while not self._stop.wait(interval):
            with self._lock:
                lines = [
                    c.line()
                    for c in self._counts.values()
                    if c.visible and c.done and not c.finished and c.done != c.total
                ]
            if lines:
                err.print("; ".join(lines))


def _bars() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}", markup=False),
        console=err,
        transient=True,
    )


@contextmanager
def _display() -> Iterator[_Display]:
    with _Display(live=err.is_terminal) as display:
        yield display


class SourceProgress:
    """Two counts for reading sources into an index: one per source read (its status
    and URL beside it, out of the total once it is known), then the chunks embedded,
    shown once embedding starts. Links a crawl's limits left unvisited are not read,
    so they do not count.

    Pass ``on_event``, ``on_embed`` and ``on_plan`` to ``ragtune.ingest.ingest`` or
    ``ragtune.sync.sync``.
    """

    def __init__(self, display: _Display, reading: str) -> None:
        self._display = display
        self._reading = display.add(reading, "sources", None)
        self._embedding = display.add("Embedding", "chunks", None, visible=False)
        self._planned: int | None = 0  # None once a crawl makes the total unknowable

    def on_plan(self, more: int | None) -> None:
        if more is None or self._planned is None:
            self._planned = None
            self._display.set_unknown_total(self._reading)
            return
        self._planned += more
        self._display.update(self._reading, total=self._planned)

    def on_event(self, event: CrawlEvent) -> None:
        if event.unvisited:
            return
        status = printable(f"{event.status} {event.url[-60:]}")
        self._display.update(self._reading, advance=1, status=status)

    def on_embed(self, done: int, total: int) -> None:
        self._display.finish(self._reading)  # everything is read before embedding starts
        self._display.update(self._embedding, done=done, total=total, status="", visible=True)


@contextmanager
def source_progress(reading: str) -> Iterator[SourceProgress]:
    """Show sources being read (the first count is labelled ``reading``) and embedded."""
    with _display() as display:
        yield SourceProgress(display, reading)


@contextmanager
def count_progress(description: str, total: int | None = None) -> Iterator[CountHook]:
    """Show one count labelled ``description``; the hook it yields moves it."""
    with _display() as display:
        task = display.add(description, "done", total)

        def on_count(done: int, total: int | None) -> None:
            display.update(task, done=done, total=total)

        yield on_count
