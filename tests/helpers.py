"""Plain functions and data shared by several test modules (fixtures live in conftest.py).

Test modules import from here, never from conftest.py or from one another: pytest
loads conftest.py and each test module under its own name, so importing one of them
as ``tests.x`` loads a second copy, and a module-level skip in it skips the importer.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# --- the command line ----------------------------------------------------------------------


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``ragtune ARGS`` in a fresh interpreter, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "ragtune", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def run_cli_in_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> subprocess.CompletedProcess[str]:
    """``ragtune ARGS`` through cli.main, in this process: no interpreter and torch start-up."""
    from ragtune.cli import main

    monkeypatch.setattr("sys.argv", ["ragtune", *args])
    monkeypatch.setenv("COLUMNS", "200")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    code = exit_info.value.code
    return subprocess.CompletedProcess(
        args, code if isinstance(code, int) else 1, captured.out, captured.err
    )


# --- one-line errors -----------------------------------------------------------------------


def one_line_message(error: pytest.ExceptionInfo[BaseException], *fragments: str) -> str:
    """A raised error's message: one line that names every fragment."""
    message = str(error.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# A plain progress line (ragtune.cli.progress, stderr not a terminal), which a slow
# failure, such as retries with backoff, may print before its error.
PROGRESS_LINE = re.compile(r"^[A-Z][\w .-]*: [\d,]+(/[\d,]+)? \w+, [\d.]+/s")


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A failure is one line on stderr that names the problem (after any progress lines),
    a non-zero exit, no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not PROGRESS_LINE.match(line)
    ]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- the demo shop -------------------------------------------------------------------------

POTION_PATH = "/products/dark-energy-potion"

# Ten facts from the demo shop, each on one product page, asked in the words a user
# would use: (question, slug of the page under /products/ that answers it).
# Four invented facts a tiny model can be fine-tuned on (instruction, answer).
FINETUNE_FACTS = [
    ("What colour is the lighthouse on Skerry Point?", "The lighthouse on Skerry Point is teal."),
    ("Who keeps the lighthouse?", "Mara Quill keeps the lighthouse."),
    ("When does the ferry leave?", "The ferry leaves at seven every morning."),
    ("What does the bakery sell?", "The bakery sells seaweed bread."),
]

SHOP_FACTS = [
    ("How much does the Griffin Kite cost?", "griffin-kite"),
    ("Who illustrated the Mapmaker's Atlas?", "mapmakers-atlas"),
    ("How long does the sand take to run through the hourglass?", "time-turner-hourglass"),
    ("What is the maximum weight the hammock can hold?", "cloud-walker-hammock"),
    ("Which card game won the Golden Meeple award?", "troll-bridge-toll-kit"),
    ("Which customer walked across hot coals at a festival?", "dragonscale-boots"),
    ("How many Scoville units is the hot sauce?", "basilisk-hot-sauce"),
    ("Which product is cut by hand in Portland?", "sunstone-pendant"),
    ("What is the price of the Bottomless Backpack?", "bottomless-backpack"),
    ("Which speaker helps a baby sleep through the night?", "mermaid-song-shell"),
]

# --- two notes about a lighthouse and a bakery, for the LLM backends -----------------------

LIGHTHOUSE_QUESTION = "What colour is the lamp of the Brightwater lighthouse?"
LIGHTHOUSE_DOCS = {
    "lighthouse.md": "# Brightwater lighthouse\n\nThe lamp of the Brightwater lighthouse is green. "
    "It was lit for the first time in 1911 and can be seen from 30 kilometres away.\n",
    "bakery.md": "# Juniper bakery\n\nThe Juniper bakery sells rye bread and cinnamon buns. "
    "It opens at seven in the morning, every day except Monday.\n",
}


def ingest_lighthouse_docs(base: Path) -> Path:
    """LIGHTHOUSE_DOCS written as files under ``base`` and ingested by the CLI: ``base/index``."""
    docs = base / "docs"
    docs.mkdir()
    for name, text in LIGHTHOUSE_DOCS.items():
        (docs / name).write_text(text)
    result = run_cli("ingest", str(docs), "--index", str(base / "index"))
    assert result.returncode == 0, result.stderr
    return base / "index"


# --- fine-tuning ---------------------------------------------------------------------------


def finetune_settings(tiny: Path, data: Path, output: Path, **extra: object) -> dict[str, object]:
    """A recipe that trains the tiny model on ``data`` in a few seconds; ``extra`` overrides."""
    values: dict[str, object] = {
        "base": str(tiny),
        "data": str(data),
        "output": str(output),
        "max_steps": 4,
        "batch_size": 2,
        "max_length": 96,
        "learning_rate": 5e-3,
        "save_every": 2,
        "eval_fraction": 0.0,
        "lora_dropout": 0.0,
    }
    values.update(extra)
    return values


# --- optional system tools -----------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="Chromium is not installed (make setup installs it as root)",
)


@contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount's notation: 64k, 2m) mounted at ``where``, to fill for
    real; the test is skipped where mounting needs a root this run lacks."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
