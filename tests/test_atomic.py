"""ragtune.atomic: a reader sees the old file or the new one, never half of one, and a
failed write leaves nothing behind."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers import small_tmpfs

from ragtune.atomic import (
    StagedDirectory,
    StagedFile,
    discard_leftovers,
    write_bytes_atomic,
    write_failure,
    write_json_atomic,
    write_text_atomic,
)


class Interrupted(Exception):
    """Raised inside a write to stand for whatever stops it halfway."""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


@pytest.fixture()
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, to fill for real."""
    with small_tmpfs(tmp_path / "small", "64k") as where:
        yield where


# --- files ---------------------------------------------------------------------------------


def test_json_round_trips_indented_with_non_ascii_text_kept(tmp_path: Path) -> None:
    data = {"name": "Träume", "steps": [1, 2.5, None], "nested": {"ok": True}}
    path = tmp_path / "new" / "data.json"  # the directory is created
    write_json_atomic(path, data)
    assert json.loads(path.read_text(encoding="utf-8")) == data
    assert path.read_text(encoding="utf-8") == json.dumps(data, indent=2, ensure_ascii=False)
    assert names(path.parent) == ["data.json"]


def test_text_and_bytes_replace_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "latest"
    write_text_atomic(path, "step-00000001\n")
    write_bytes_atomic(path, b"step-00000002\n")
    assert path.read_bytes() == b"step-00000002\n"
    assert names(tmp_path) == ["latest"]


def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"old model")
    with pytest.raises(Interrupted), StagedFile(path) as scratch:
        scratch.write_bytes(b"half of a new")
        raise Interrupted
    assert path.read_bytes() == b"old model"
    assert names(tmp_path) == ["model.gguf"]


def test_a_value_json_cannot_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert names(tmp_path) == ["a.json"]


def test_a_full_disk_keeps_the_old_file_and_says_disk_full(tiny_disk: Path) -> None:
    path = tiny_disk / "big.bin"
    write_bytes_atomic(path, b"old")
    with pytest.raises(OSError) as error:
        write_bytes_atomic(path, b"x" * (1 << 20))
    assert error.value.errno == errno.ENOSPC
    assert write_failure(error.value, tiny_disk) == "disk full"
    assert path.read_bytes() == b"old"
    assert names(tiny_disk) == ["big.bin"]


@pytest.mark.parametrize(("mask", "wanted"), [(0o022, 0o644), (0o002, 0o664), (0o027, 0o640)])
def test_a_file_mode_follows_the_umask(tmp_path: Path, mask: int, wanted: int) -> None:
    old = os.umask(mask)
    try:
        write_text_atomic(tmp_path / "a.txt", "a")
        with StagedFile(tmp_path / "b.bin") as scratch:
            scratch.write_bytes(b"b")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.txt") == mode(tmp_path / "b.bin") == wanted


def test_a_directory_that_cannot_be_written_fails_before_the_block(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(OSError):
        StagedFile(blocker / "out.json")
    with pytest.raises(OSError):
        StagedDirectory(blocker / "out")
    assert names(tmp_path) == ["afile"]


# --- directories ---------------------------------------------------------------------------


def test_a_directory_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "stale.bin").write_text("from the previous run")
    with StagedDirectory(target) as scratch:
        (scratch / "weights.safetensors").write_text("new")
        (scratch / "nested").mkdir()
        (scratch / "nested" / "tokenizer.json").write_text("{}")
    assert names(target) == ["nested", "weights.safetensors"]
    assert (target / "nested" / "tokenizer.json").read_text() == "{}"
    assert names(tmp_path) == ["adapter"]


def test_a_file_where_the_directory_goes_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "merged"
    target.write_text("not a model")
    with StagedDirectory(target) as scratch:
        (scratch / "config.json").write_text("{}")
    assert names(target) == ["config.json"]
    assert names(tmp_path) == ["merged"]


def test_a_failure_mid_directory_keeps_the_old_one_and_leaves_no_debris(tmp_path: Path) -> None:
    target = tmp_path / "step-00000002"
    target.mkdir()
    (target / "state.json").write_text('{"step": 2}')
    with pytest.raises(Interrupted), StagedDirectory(target) as scratch:
        (scratch / "state.json").write_text('{"step": 2, "half": ')
        raise Interrupted
    assert (target / "state.json").read_text() == '{"step": 2}'
    assert names(tmp_path) == ["step-00000002"]


@pytest.mark.parametrize(("mask", "wanted"), [(0o022, 0o755), (0o027, 0o750)])
def test_a_directory_mode_follows_the_umask(tmp_path: Path, mask: int, wanted: int) -> None:
    old = os.umask(mask)
    try:
        with StagedDirectory(tmp_path / "model") as scratch:
            (scratch / "config.json").write_text("{}")
    finally:
        os.umask(old)
    assert mode(tmp_path / "model") == wanted


# --- leftovers and reasons -----------------------------------------------------------------


def test_leftovers_of_killed_writes_are_discarded_and_nothing_else(tmp_path: Path) -> None:
    kept = ["model", ".model", ".model.tmp", ".other.txt", ".model.0123.tmp"]
    for name in kept:
        (tmp_path / name).write_text("keep")
    (tmp_path / ".model.0123456789abcdef.tmp").mkdir()  # a staged directory
    (tmp_path / ".model.0123456789abcdef.old").mkdir()  # a directory being replaced
    (tmp_path / ".latest.fedcba9876543210.tmp").write_text("step-")  # a staged file

    discard_leftovers(tmp_path, "model")
    assert names(tmp_path) == sorted([*kept, ".latest.fedcba9876543210.tmp"])
    discard_leftovers(tmp_path)
    assert names(tmp_path) == sorted(kept)
    discard_leftovers(tmp_path / "missing")  # nothing to do


def test_write_failure_names_a_full_disk_whichever_library_reports_it(tmp_path: Path) -> None:
    assert write_failure(OSError(errno.ENOSPC, "No space left on device"), tmp_path) == (
        "disk full"
    )
    assert write_failure(RuntimeError("Error while writing (os error 28)"), tmp_path) == (
        "disk full"
    )
    assert write_failure(PermissionError("denied\ntraceback..."), tmp_path) == "denied"
