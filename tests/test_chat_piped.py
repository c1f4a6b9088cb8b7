"""``ragtune chat`` with questions piped in: the transcript on stdout reads turn by turn,
each question echoed as "> QUESTION" and the turns a blank line apart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers import LIGHTHOUSE_QUESTION, ingest_lighthouse_docs

BAKERY_QUESTION = "When does the Juniper bakery open?"


@pytest.fixture(scope="module")
def lighthouse_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ingest_lighthouse_docs(tmp_path_factory.mktemp("lighthouse"))


def chat(index: Path, lines: list[str]) -> subprocess.CompletedProcess[str]:
    """``ragtune chat`` with ``lines`` on a pipe; quoted answers, so no LLM runs."""
    return subprocess.run(
        [sys.executable, "-m", "ragtune", "chat", "--index", str(index), "--answer", "extract"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_piped_questions_are_echoed_and_turns_kept_apart(lighthouse_index: Path) -> None:
    result = chat(lighthouse_index, [LIGHTHOUSE_QUESTION, "", BAKERY_QUESTION])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    prompts = [n for n, line in enumerate(lines) if line.startswith("> ")]
    assert [lines[n] for n in prompts] == [f"> {LIGHTHOUSE_QUESTION}", f"> {BAKERY_QUESTION}"]
    assert prompts[0] == 0  # the transcript opens with the first question
    first_turn = "\n".join(lines[prompts[0] + 1 : prompts[1]])
    assert "green" in first_turn  # its answer sits under its question...
    assert lines[prompts[1] - 1] == ""  # ...and a blank line ends the turn
    assert "Juniper" in "\n".join(lines[prompts[1] + 1 :])
    assert result.stderr.splitlines()[-1].startswith("2 turns in ")


def test_piped_commands_are_echoed_too(lighthouse_index: Path) -> None:
    result = chat(lighthouse_index, [LIGHTHOUSE_QUESTION, "/sources", "/exit", "never asked"])
    assert result.returncode == 0, result.stderr
    prompts = [line for line in result.stdout.splitlines() if line.startswith("> ")]
    assert prompts == [f"> {LIGHTHOUSE_QUESTION}", "> /sources", "> /exit"]
    sources = result.stdout.split("> /sources", 1)[1]
    assert "lighthouse.md" in sources
