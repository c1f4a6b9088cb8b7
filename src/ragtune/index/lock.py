"""One writer at a time per index.

Everything that changes an index (``ragtune ingest``, ``ragtune sync``, and the
Python API's ``from_documents``, ``insert_documents`` and ``delete_documents``)
holds an advisory ``flock`` on ``ragtune.lock`` in the index directory, so two
writers never race on the store's commits, the manifest or ``sources.json``.
A writer that finds the index locked says so on stderr and waits its turn.
Readers (ask, retrieve, chat) never take the lock: every write is already
atomic for them.

The lock is reentrant within a process (an ingest holds it around index writes
that take it again) and serialises threads as well as processes. The file is
removed by the last release, so it exists only while a writer is at work; a
waiter that wakes to find its file removed locks the new one instead.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from ragtune.errors import InvalidIndexError

LOCK_FILE = "ragtune.lock"
WaitHook = Callable[[Path], None]


def say_waiting(directory: Path) -> None:
    """The default: one line on stderr, where ragtune's progress goes."""
    print(
        f"index {directory} is busy (another ingest or sync is writing to it); waiting...",
        file=sys.stderr,
        flush=True,
    )


@dataclass
class _Hold:
    """This process's hold on one index's lock."""

    threads: threading.RLock = field(default_factory=threading.RLock)
    depth: int = 0
    fd: int = -1
    created_directory: bool = False


_holds: dict[Path, _Hold] = {}
_holds_guard = threading.Lock()


@contextmanager
def write_lock(directory: Path, on_wait: WaitHook = say_waiting) -> Iterator[None]:
    """Hold ``directory``'s write lock (creating the directory if needed) for the block.

    ``on_wait`` is called once if another writer holds it. A directory this
    call created is removed again if nothing was written into it.
    """
    key = Path(os.path.abspath(directory))
    with _holds_guard:
        hold = _holds.setdefault(key, _Hold())
    waited = False

    def wait() -> None:
        nonlocal waited
        if not waited:
            waited = True
            on_wait(directory)

    if not hold.threads.acquire(blocking=False):
        wait()
        hold.threads.acquire()
    try:
        if hold.depth == 0:
            try:
                hold.fd, hold.created_directory = _lock(key, wait)
            except OSError as error:
                raise InvalidIndexError(
                    f"cannot write the index at {directory}: {error.strerror or error}"
                ) from None
        hold.depth += 1
        try:
            yield
        finally:
            hold.depth -= 1
            if hold.depth == 0:
                _unlock(key, hold.fd, hold.created_directory)
                hold.fd = -1
    finally:
        hold.threads.release()


def _lock(directory: Path, wait: Callable[[], None]) -> tuple[int, bool]:
    """Lock the directory's lock file: (its descriptor, whether the directory was made)."""
    created = False
    path = directory / LOCK_FILE
    while True:
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            created = True
        try:
            # 0o666: the umask decides, as for every other file of the index.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError:
            if created:
                with suppress(OSError):
                    directory.rmdir()
            raise
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                wait()
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _is_current(fd, path):
                return fd, created
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the last holder removed this file: lock the one there now


def _is_current(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _unlock(directory: Path, fd: int, created_directory: bool) -> None:
    try:
        # Removed while still locked, so no newcomer can lock this file after us.
        with suppress(FileNotFoundError):
            (directory / LOCK_FILE).unlink()
        if created_directory:
            with suppress(OSError):
                directory.rmdir()  # only succeeds when nothing else was written
    finally:
        os.close(fd)
