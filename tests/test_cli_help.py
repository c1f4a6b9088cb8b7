"""Every command's ``--help`` ends with examples that are real command lines, and
``ragtune --version`` answers at once.

The examples are read from the help as a user sees it, at 80 columns, and parsed
against the app by the same check tests/test_docs.py applies to the docs' commands.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from tests.docs_blocks import check_command
from tests.helpers import run_cli
from tests.test_startup import HEAVY, loaded_after
from typer.main import get_command

from ragtune.cli import EXAMPLES, build_app, main
from ragtune.version import __version__

ROOT = get_command(build_app())


def command_paths(command: object, words: tuple[str, ...] = ()) -> list[str]:
    """Every command and group under ``command``, as words after ``ragtune``."""
    paths = [" ".join(words)]
    for name, sub in getattr(command, "commands", {}).items():
        paths.extend(command_paths(sub, (*words, name)))
    return paths


PATHS = command_paths(ROOT)


def help_at_80_columns(
    path: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> str:
    """``ragtune PATH --help`` through the console script's ``main``, on an 80-column
    terminal (Rich wraps at the width it finds in COLUMNS)."""
    monkeypatch.setattr("sys.argv", ["ragtune", *path.split(), "--help"])
    monkeypatch.setenv("COLUMNS", "80")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    assert exit_info.value.code == 0, captured.err
    return captured.out


def examples_in(help_text: str) -> list[str]:
    """The command lines under the help's last "Example:" or "Examples:" heading, each
    with its ``\\`` continuations joined."""
    lines = [line.strip() for line in help_text.splitlines()]
    headings = [n for n, line in enumerate(lines) if line in ("Example:", "Examples:")]
    assert headings, help_text
    commands: list[str] = []
    continued = False
    for line in lines[headings[-1] + 1 :]:
        if not line:
            continue
        if continued:
            commands[-1] = f"{commands[-1]} {line}"
        else:
            commands.append(line)
        continued = line.endswith("\\")
        if continued:
            commands[-1] = commands[-1][:-1].rstrip()
    return commands


def test_every_command_has_examples_and_no_example_is_left_over() -> None:
    assert "ingest" in PATHS and "eval answers" in PATHS and "serve-key new" in PATHS
    assert sorted(EXAMPLES) == sorted(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=lambda path: path or "ragtune")
def test_help_ends_with_examples_that_parse(
    path: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    help_text = help_at_80_columns(path, capsys, monkeypatch)
    # The examples come last, each line whole: Rich wrapped none of them.
    rendered = [line.strip() for line in help_text.splitlines() if line.strip()]
    assert rendered[-len(EXAMPLES[path]) :] == [line.strip() for line in EXAMPLES[path]]
    commands = examples_in(help_text)
    assert commands
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "ragtune", command
        if path:  # a command's examples are of that command
            assert words[1 : 1 + len(path.split())] == path.split(), command
        assert check_command(ROOT, words[1:]) is None, (command, check_command(ROOT, words[1:]))


def test_the_check_refuses_what_would_not_parse() -> None:
    # So that a passing test above means something: the same check on broken lines.
    for words in (
        ["retrieve", "q", "--index", "./idx", "--top-k", "0"],
        ["retrieve", "q"],
        ["ingest", "examples/docs", "--index", "./idx", "--no-such-flag"],
        ["eval", "retrieval", "--qa", "examples/data/qa.json"],
        ["tokenizer", "train", "-o"],
        ["ask", "q", "--mode", "psychic"],
        ["no-such-command"],
    ):
        assert check_command(ROOT, words), words


def test_version_prints_the_package_version_and_exits_zero() -> None:
    for flag in ("--version", "-V"):
        result = run_cli(flag)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"ragtune {__version__}\n"
        assert result.stderr == ""
    assert __version__.count(".") == 2


def test_version_wins_over_a_command_and_loads_no_heavy_library(tmp_path: Path) -> None:
    # Eager: answered before any command is resolved (a missing --index is no error here).
    result = run_cli("--version", "retrieve")
    assert (result.returncode, result.stdout) == (0, f"ragtune {__version__}\n")
    loaded = loaded_after(
        """
        sys.argv = ["ragtune", "--version"]
        from ragtune.cli import main
        main()
        """,
        tmp_path,
    )
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_a_command_has_no_version_option() -> None:
    result = run_cli("ingest", "--version")
    assert result.returncode == 2
    assert result.stderr.startswith("error: No such option: --version")
