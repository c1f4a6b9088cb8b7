"""Progress that tells the truth, where a user reads it: the summary on stdout with
counts in plain English, progress on stderr, and, when stderr is not a terminal (a
pipe here, as in CI or ``2>file``), plain lines with counts, rate and time left
rather than silence or escape sequences."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.helpers import run_cli

from ragtune.terminal import PROGRESS_INTERVAL_VARIABLE as INTERVAL_VARIABLE

FILES = 40


def make_folder(root: Path) -> Path:
    """HTML pages, whose extraction takes long enough for several progress lines."""
    root.mkdir()
    for n in range(FILES):
        paragraphs = "".join(
            f"<p>The harbour master logged {n * 10 + k} ships entering the basin, and the "
            f"pilot boat met each of them at the bar on tide {k}.</p>"
            for k in range(20)
        )
        (root / f"note{n:02}.html").write_text(
            f"<html><head><title>Note {n}</title></head><body><nav>Home</nav>"
            f"<article><h1>Note {n}</h1>{paragraphs}</article></body></html>",
            encoding="utf-8",
        )
    return root


def test_a_pipe_gets_plain_progress_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_VARIABLE, "0.05")
    folder = make_folder(tmp_path / "notes")
    result = run_cli("ingest", str(folder), "--index", str(tmp_path / "idx"))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stderr and "\r" not in result.stderr
    lines = result.stderr.splitlines()
    # The folder was counted before reading: every reading line knows the total.
    reading = [line for line in lines if line.startswith("Reading: ")]
    embedding = [line for line in lines if "Embedding: " in line]
    assert reading, result.stderr
    for line in reading:
        assert re.match(rf"Reading: \d+/{FILES} sources, [\d.]+/s", line), line
    for line in embedding:
        assert re.search(r"Embedding: \d+/\d+ chunks, [\d.]+/s", line), line
    assert any("left" in line for line in reading + embedding), result.stderr
    # The result is on stdout, and only there.
    assert result.stdout.startswith(f"Indexed {FILES} documents into")
    assert "Indexed" not in result.stderr


def test_short_work_prints_no_progress_and_summaries_count_in_english(tmp_path: Path) -> None:
    (tmp_path / "one.md").write_text("# One\n\nA single short note about a lighthouse.\n")
    first = run_cli("ingest", str(tmp_path / "one.md"), "--index", str(tmp_path / "idx"))
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""  # well under the interval: no progress line
    assert "Indexed 1 document into" in first.stdout
    assert "1 document, 1 chunk in the index" in first.stdout
    assert "1 chunk written (1 embedded);" in first.stdout
    assert "cache" not in first.stdout  # nothing came from it
    synced = run_cli("sync", "--index", str(tmp_path / "idx"))
    assert synced.returncode == 0, synced.stderr
    assert "1 unchanged, 0 changed (0 chunks embedded)" in synced.stdout
    assert "1 document, 1 chunk in the index" in synced.stdout
