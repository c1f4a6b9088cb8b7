"""Where finetune, align, merge and export may write: never over what they read.

Paths are compared as the file system sees them, so a symlink or a ``..`` that leads back
into an input is caught like the plain path. Every check runs before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ragtune.atomic import write_failure
from ragtune.errors import TrainingError


def check_parents(output: Path) -> None:
    """Refuse an output under a file, which ``mkdir`` would report only as "File exists"."""
    # Nearest first. absolute() keeps a "..", which the system follows only through a directory.
    for parent in output.expanduser().absolute().parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise TrainingError(f"cannot write {output}: {parent} is not a directory")
            return


def refuse_existing(output: Path, overwrite: bool) -> None:
    """Something at ``output`` is replaced only when asked (checked after the inputs, so the
    advice to pass --overwrite is never given where it would not help)."""
    if os.path.lexists(output) and not overwrite:
        raise TrainingError(f"output {output} already exists; pass --overwrite to replace it")


def within(path: Path, directory: Path) -> bool:
    """Whether ``path`` is ``directory`` or lies inside it, following symlinks and ``..``."""
    try:
        resolved, top = path.resolve(), directory.resolve()
    except (OSError, RuntimeError):  # a symlink loop: neither can be written through
        return False
    if resolved == top or top in resolved.parents:
        return True
    try:  # the same file or directory under another name (a bind mount, a hard link)
        return os.path.samefile(path, directory)
    except OSError:
        return False


def refuse_inputs_within(
    written: Path, inputs: Iterable[tuple[str, Path]], output: Path | None = None
) -> None:
    """``written`` is replaced or removed whole: refuse when an input is it or lies inside.

    ``inputs`` are (what it is, path) pairs; ``output`` is the path to name in the message
    when ``written`` is a part of it.
    """
    for label, path in inputs:
        if within(path, written):
            shown = output if output is not None else written
            raise TrainingError(
                f"output {shown} would replace the {label} {path} it reads; choose another output"
            )


def write_run_file(path: Path, text: str) -> None:
    """A run's small text file (config.yaml, summary.json), a full disk said so."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        reason = write_failure(error, path.parent)
        raise TrainingError(f"cannot write {path}: {reason}") from None
