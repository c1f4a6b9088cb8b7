"""Writing files and directories so that a reader sees the old version or the new one.

Everything is written under a temporary name beside its target (the same directory, so
the same file system), flushed to disk, and renamed over the target in one step; a
failure at any point removes the temporary and leaves the target as it was. Modes follow
the umask (0o666 for files, 0o777 for directories, less the umask) like anything else
ragtune writes: ``mkstemp`` and ``mkdtemp`` would make them private whatever it says.

    write_json_atomic(index / "ragtune.json", manifest)
    with StagedFile(output) as scratch:            # for writers that want a path
        writer.write_to(scratch)
    with StagedDirectory(run / "adapter") as scratch:
        model.save_pretrained(scratch)

Temporaries are named ``.NAME.<16 hex digits>.tmp``, and a directory being replaced is
moved aside, for a moment, as ``.NAME.<16 hex digits>.old``. ``discard_leftovers`` removes
what a process killed halfway left behind. Callers turn a failure into their own one-line
error; ``write_failure`` says "disk full" whichever library reported it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

from ragtune.errors import first_line, is_disk_full

_LEFTOVER = re.compile(r"\.(?P<target>.+)\.[0-9a-f]{16}\.(?:tmp|old)")
# Less free space than this after a failed write: the disk is what failed.
NEARLY_FULL_BYTES = 16 * 2**20


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step; its directory is created if missing."""
    with StagedFile(path) as scratch:
        scratch.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) in one step."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as indented JSON, non-ASCII text kept as it is."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False))


class _Staged:
    """A temporary beside ``target`` that the ``with`` block fills: put in the target's
    place when the block ends normally, removed when it (or the publishing) raises."""

    target: Path
    path: Path

    def __enter__(self) -> Path:
        return self.path

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is not None:
            self._discard()
            return
        try:
            self._publish()
        except BaseException:
            self._discard()
            raise
        _fsync(self.target.parent)  # the rename itself, not only the data, survives a crash

    def _publish(self) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError


class StagedFile(_Staged):
    """An empty temporary file beside ``target``, renamed over it when the ``with`` block
    ends normally and removed when it raises. Creating one creates the target's directory
    if missing, and raises OSError there, so that a caller can tell "cannot write here"
    from a failure of the writing itself."""

    def __init__(self, target: Path) -> None:
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        self.path = _beside(target, "tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        os.close(os.open(self.path, flags, 0o666))

    def _publish(self) -> None:
        _fsync(self.path)
        os.replace(self.path, self.target)

    def _discard(self) -> None:
        self.path.unlink(missing_ok=True)


class StagedDirectory(_Staged):
    """An empty temporary directory beside ``target``, put in its place when the ``with``
    block ends normally and removed when it raises. An existing target (a directory or a
    file) is replaced whole: never a mixture of old and new files. As with StagedFile,
    creating one raises OSError when the target's directory cannot be written."""

    def __init__(self, target: Path) -> None:
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        self.path = _beside(target, "tmp")
        self.path.mkdir(mode=0o777)

    def _publish(self) -> None:
        _fsync_tree(self.path)
        _replace_directory(self.path, self.target)

    def _discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def discard_leftovers(directory: Path, target_name: str | None = None) -> None:
    """Remove the temporaries that writes killed halfway left in ``directory``: those of
    ``target_name`` only, or of any target. Call it only where no other process can be
    writing the same targets (under a lock, or in a directory one process owns)."""
    try:
        entries = list(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        match = _LEFTOVER.fullmatch(entry.name)
        if match and (target_name is None or match["target"] == target_name):
            _remove(entry)


def write_failure(error: BaseException, where: Path) -> str:
    """A short reason for a failed write: "disk full" whichever library reported it.

    torch and tokenizers do not always say so: a disk with almost no space left after
    the failure is taken to be the cause."""
    if is_disk_full(error):
        return "disk full"
    try:
        if shutil.disk_usage(where).free < NEARLY_FULL_BYTES:
            return "disk full"
    except OSError:
        pass
    return first_line(error)


def _beside(target: Path, suffix: str) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(8)}.{suffix}")


def _replace_directory(staged: Path, target: Path) -> None:
    # rename() cannot replace a non-empty directory: the old one is moved aside first, so a
    # crash between the two renames leaves it whole beside the target, never half deleted.
    if not os.path.lexists(target):
        os.rename(staged, target)
        return
    retired = _beside(target, "old")
    os.rename(target, retired)
    try:
        os.rename(staged, target)
    except BaseException:
        os.rename(retired, target)
        raise
    _remove(retired)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync_tree(directory: Path) -> None:
    for folder, _, files in os.walk(directory):
        for name in files:
            _fsync(Path(folder, name))
        _fsync(Path(folder))


def _fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries, to the disk."""
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
