"""Hostile text reaching the terminal: control sequences, Rich markup, usage errors.

Pages and files are untrusted, and so are the names of files and directories.
Nothing in them may act on the terminal (clear it, plant a hyperlink, write the
clipboard) or be read as Rich markup (crash with MarkupError, hide part of a URL).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers import assert_one_line_error, run_cli
from tests.webserver import Site, serve

from ragtune.terminal import json_for_terminal, printable

CLEAR_SCREEN = "\x1b[2J\x1b[H"
CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4=\x07"  # OSC 52: write "rm -rf ~" to the clipboard
HYPERLINK = "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\"
CSI_8BIT = "\x9b31m"
HOSTILE = f"{CLEAR_SCREEN}{CLIPBOARD}{HYPERLINK}{CSI_8BIT}\u202eevil\u202c\r"
MARKUP = "[/] [link=http://evil.example/]hidden[/link] [bold red]loud :smile:"
# Anything a terminal acts on: C0 controls but tab and newline, DEL, C1, bidi controls.
ACTIVE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _hostile_markdown(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "potions.md"
    path.write_text(
        f"# Potion notes\n\nThe dark energy potion tastes of cherry cola. {MARKUP} "
        f"Brewed in copper kettles. {HOSTILE}\n",
        encoding="utf-8",
    )
    return path


def _assert_inert(text: str) -> None:
    assert not ACTIVE.search(text), repr(ACTIVE.search(text))


def test_printable_strips_what_a_terminal_would_act_on() -> None:
    assert printable(f"a{HOSTILE}b\tc\nd") == (
        "a[2J[H]52;c;cm0gLXJmIH4=]8;;http://evil.example/\\click]8;;\\31mevilb\tc\nd"
    )
    assert printable("caf\u00e9 \u4e2d\u6587 \U0001f600") == "caf\u00e9 \u4e2d\u6587 \U0001f600"


def test_json_keeps_the_data_exact_and_escapes_controls() -> None:
    data = {"text": f"caf\u00e9 {HOSTILE}", "url": MARKUP}
    text = json_for_terminal(data)
    _assert_inert(text)
    assert "caf\u00e9" in text  # non-ASCII stays readable
    assert json.loads(text) == data


def test_retrieve_and_extract_print_no_control_sequences(tmp_path: Path) -> None:
    source = _hostile_markdown(tmp_path / "docs")
    index = tmp_path / "index"
    ingested = run_cli("ingest", str(source), "--index", str(index))
    assert ingested.returncode == 0, ingested.stderr
    _assert_inert(ingested.stdout + ingested.stderr)

    retrieved = run_cli("retrieve", "copper kettles", "--index", str(index))
    assert retrieved.returncode == 0, retrieved.stderr
    _assert_inert(retrieved.stdout + retrieved.stderr)
    assert "cherry cola" in retrieved.stdout
    assert MARKUP in retrieved.stdout  # shown as written, not interpreted

    as_json = run_cli("retrieve", "copper kettles", "--index", str(index), "--json")
    assert as_json.returncode == 0, as_json.stderr
    _assert_inert(as_json.stdout)
    text = json.loads(as_json.stdout)["results"][0]["text"]
    assert CLIPBOARD in text and MARKUP in text  # the data itself is kept exactly

    for fmt in ("markdown", "text"):
        extracted = run_cli("extract", str(source), "--format", fmt)
        assert extracted.returncode == 0, extracted.stderr
        _assert_inert(extracted.stdout)
        assert "Brewed in copper kettles." in extracted.stdout and MARKUP in extracted.stdout


def test_markup_in_paths_and_urls_is_printed_as_text(tmp_path: Path) -> None:
    # An index directory and a page URL full of Rich markup: ingest (its summary line
    # comes after the index is written), sync and retrieve print them literally.
    index = tmp_path / "idx [/] [link=http://evil.example/]x"
    page = (
        "<html><head><title>Kettles</title></head><body><article><h1>Kettles</h1>"
        "<p>Copper kettles brew the dark energy potion slowly over three days.</p>"
        "</article></body></html>"
    )
    site = Site()
    site.page("/p[/]a[link=x]", page)
    with serve(site):
        url = f"{site.base}/p[/]a[link=x]"
        ingested = run_cli("ingest", url, "--index", str(index), "--no-sitemaps")
        assert ingested.returncode == 0, ingested.stderr
        assert "MarkupError" not in ingested.stderr
        assert str(index) in ingested.stdout
        synced = run_cli("sync", "--index", str(index))
        assert synced.returncode == 0, synced.stderr
        assert str(index) in synced.stdout
    retrieved = run_cli("retrieve", "copper kettles", "--index", str(index))
    assert retrieved.returncode == 0, retrieved.stderr
    assert "[link=x]" in retrieved.stdout or "%5Blink%3Dx%5D" in retrieved.stdout
    assert "1. " in retrieved.stdout


def test_live_progress_on_a_terminal_shows_hostile_names_inertly(tmp_path: Path) -> None:
    # With a terminal, Rich draws the progress bar whose status is each source's URL:
    # markup there would crash the bar; control characters would reach the screen.
    folder = tmp_path / "docs [/] [link=http://evil.example/]"
    _hostile_markdown(folder)
    (folder / f"notes{CLIPBOARD[:-1]}.md").write_text("Kettles hold water.\n", encoding="utf-8")
    site = Site()
    site.page("/k[/]x[link=y]", "<html><body><article><p>Kettles boil.</p></article></body></html>")
    with serve(site):
        result = subprocess.run(
            [sys.executable, "-m", "ragtune", "ingest", str(folder), f"{site.base}/k[/]x[link=y]"]
            + ["--index", str(tmp_path / "i"), "--no-sitemaps"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "COLUMNS": "200", "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"},
        )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "Indexed 3 documents" in result.stdout
    for sequence in (CLEAR_SCREEN, CLIPBOARD[:-1], "\x1b]8;;http://evil", CSI_8BIT, "\u202e"):
        assert sequence not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "fragment", "command"),
    [
        (["retrieve"], "Missing argument 'question'", "retrieve"),
        (["retrieve", "q"], "Missing option '--index'", "retrieve"),
        (["retrieve", "q", "--index", "x", "--top-k", "0"], "'--top-k'", "retrieve"),
        (["ask", "q", "--top-k", f"1{CLEAR_SCREEN}"], "'--top-k'", "ask"),
        (["ingest", "x", "--index", "i", "--no-such-option"], "No such option", "ingest"),
        (["no-such-command"], "No such command", ""),
        (["retreive", "q"], "Did you mean 'retrieve'", ""),
        (["--no-such-option"], "No such option", ""),
        (["retrieve", "q", "--index", "x", "--mode", "psychic"], "'hybrid', 'dense'", "retrieve"),
        (["ingest", "x", "--index", "i", "--render", "sometimes"], "'never', 'auto'", "ingest"),
        (["extract", "x", "--format", "pdf"], "'markdown', 'text'", "extract"),
        (["align", "--method", "ppo"], "'dpo'", "align"),
        (["retrieve", "a", "b", "--index", "x"], "unexpected extra argument", "retrieve"),
        # The groups and their subcommands, and an option left without its value,
        # which click reports before it knows the command: the path is still named.
        (["eval", "retrieval", "--index", "x"], "Missing option '--qa'", "eval retrieval"),
        (["eval", "no-such-command"], "No such command", "eval"),
        (["tokenizer", "train", "-o"], "'-o' requires an argument", "tokenizer train"),
        (["models", "pull", "owner/repo"], "Missing argument", "models pull"),
        (["models", "--no-such-option"], "No such option", "models"),
        (["serve-key", "new", "--file"], "'--file' requires an argument", "serve-key new"),
        (["serve", "--index", "x", "--port", "99999"], "'--port'", "serve"),
        (["estimate", "rag", "--gpus", "two"], "'--gpus'", "estimate"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], fragment: str, command: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    see = f"(see ragtune {command} --help)" if command else "(see ragtune --help)"
    assert_one_line_error(result, fragment, see)
    assert not set("│╭╰─") & set(result.stderr), result.stderr  # no Rich panel
    assert result.stdout == ""
    _assert_inert(result.stderr)


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5", "9" * 40 + "x"])
def test_a_malformed_count_in_the_environment_is_one_line(value: str) -> None:
    from ragtune.errors import RagtuneError
    from ragtune.runtime import env_count, llm_threads, torch_threads, training_threads
    from ragtune.web.extraction_pool import extraction_workers

    variables = {
        "RAGTUNE_TORCH_THREADS": (torch_threads, training_threads),
        "RAGTUNE_LLM_THREADS": (llm_threads,),
        "RAGTUNE_EXTRACT_WORKERS": (extraction_workers,),
    }
    with pytest.MonkeyPatch.context() as env:
        for variable, readers in variables.items():
            env.setenv(variable, value)
            for read in readers:
                with pytest.raises(RagtuneError, match=f"^{variable} must be a whole number"):
                    read()
            env.setenv(variable, " 3 ")
            assert {read() for read in readers} == {3}
            env.setenv(variable, "")
            assert env_count(variable, 7) == 7


def test_a_malformed_worker_count_stops_an_ingest_in_one_line(
    shop_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "RAGTUNE_EXTRACT_WORKERS": "many", "COLUMNS": "200"}
    index = tmp_path / "idx"
    result = subprocess.run(
        [sys.executable, "-m", "ragtune", "ingest", f"{shop_url}/products", "--index", str(index)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert_one_line_error(result, "RAGTUNE_EXTRACT_WORKERS must be a whole number", "'many'")
    assert not (index / "ragtune.json").exists()


@pytest.mark.parametrize("group", [[], ["eval"], ["tokenizer"], ["serve-key"]])
def test_a_group_without_its_command_prints_its_help(group: list[str]) -> None:
    # Not an error line: what the group offers, with a usage error's exit code.
    result = run_cli(*group)
    assert result.returncode == 2
    assert f"Usage: ragtune {' '.join([*group, ''])}[OPTIONS] COMMAND" in result.stdout
    assert "Example" in result.stdout
    assert result.stderr == ""


def test_help_still_prints_and_exits_zero() -> None:
    result = run_cli("ingest", "--help")
    assert result.returncode == 0 and "--crawl" in result.stdout


def test_follow_symlinks_option_reaches_the_folder_reader(tmp_path: Path) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text("The copper kettle secret lives outside the folder.\n", encoding="utf-8")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "inside.md").write_text("Potions are brewed inside.\n", encoding="utf-8")
    (folder / "link.md").symlink_to(outside)
    kept_in = run_cli("ingest", str(folder), "--index", str(tmp_path / "a"))
    assert kept_in.returncode == 0, kept_in.stderr
    assert "--follow-symlinks" in kept_in.stderr and "1 skipped" in kept_in.stdout
    followed = run_cli("ingest", str(folder), "--index", str(tmp_path / "b"), "--follow-symlinks")
    assert followed.returncode == 0, followed.stderr
    assert "Indexed 2 documents" in followed.stdout
