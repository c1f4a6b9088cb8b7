"""The code blocks of README.md and docs/*.md, checked against the real CLI and run.

The conventions are issue #20's: a fenced block tagged bash, sh, shell or console
has each ``ragtune ...`` command line parsed against ``ragtune.cli.build_app()``;
a block right after ``<!-- docs-test: run -->`` is also run, as is every python
block, in one working directory per page; ``<!-- docs-test: skip REASON -->``
exempts a block from both. tests/test_docs.py applies these functions to the
pages, and feeds them hand-made bad Markdown to show that they catch mistakes.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

REPO = Path(__file__).resolve().parents[1]
SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "console"})
PYTHON_LANGUAGES = frozenset({"python", "py", "python3"})
DEMO_SHOP_ADDRESS = "127.0.0.1:8000"
# A runnable block must be quick: each of its processes may use this much CPU time
# (``ulimit -t``, which also holds while blocks of two pages run side by side). CPU rather
# than wall-clock time, so that a loaded machine (2 cores shared by several test runs)
# does not fail a block that is quick on its own; the wall-clock limit catches a hang.
BLOCK_CPU_S = 60
BLOCK_WALL_S = 300.0

# Any indentation: a fence inside a list item is indented past CommonMark's 3 spaces, and
# a block missed here would go unchecked without a word.
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<directive>.*?)\s*-->\s*$")
# Words that run the command after them: ``time ragtune ...`` is a ragtune command line.
_PREFIXES = frozenset({"time", "env", "nohup", "exec", "command", "sudo"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# Shell operators that end one simple command and start the next.
_SEPARATORS = frozenset({"|", "||", "&&", ";", "&", "|&", "(", ")"})


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts (the fence's line, 1-based), its language and
    text, and the ``docs-test`` directive on the line just above it, if any."""

    page: str
    line: int
    language: str
    text: str
    directive: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def skipped(self) -> bool:
        return self.directive is not None and self.directive.startswith("skip")

    @property
    def runnable(self) -> bool:
        if self.skipped:
            return False
        if self.language in PYTHON_LANGUAGES:
            return True
        return self.directive == "run" and self.language in SHELL_LANGUAGES


@dataclass(frozen=True)
class CommandLine:
    line: int  # in the page, 1-based: where the command (or its first continued line) is
    text: str  # as written, continuations joined
    words: tuple[str, ...]  # the ragtune command's own words, after ``ragtune``


# --- reading a page ------------------------------------------------------------------------


def parse_blocks(page: str, markdown: str) -> tuple[list[Block], list[str]]:
    """The fenced blocks of ``markdown`` and the problems with its directives: a
    directive not followed at once by a fence, or one that is neither run nor skip."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        marker = _MARKER.match(lines[index])
        if marker:
            directive = marker["directive"]
            if not (directive == "run" or re.fullmatch(r"skip\s+\S.*", directive)):
                problems.append(
                    f"{page}:{index + 1}: unknown directive {directive!r}; "
                    "expected `docs-test: run` or `docs-test: skip REASON`"
                )
            following = lines[index + 1] if index + 1 < len(lines) else ""
            if not _FENCE.match(following):
                problems.append(
                    f"{page}:{index + 1}: a docs-test directive must be the line right "
                    "before a code fence"
                )
        if not opening:
            index += 1
            continue
        fence = opening["fence"]
        language = (opening["info"].strip().split() or [""])[0].lower()
        previous = _MARKER.match(lines[index - 1]) if index > 0 else None
        body: list[str] = []
        end = index + 1
        while end < len(lines):
            closing = lines[end].strip()
            if closing.startswith(fence[0] * len(fence)) and not closing.strip(fence[0]):
                break
            body.append(_dedent(lines[end], len(opening["indent"])))
            end += 1
        block = Block(
            page=page,
            line=index + 1,
            language=language,
            text="\n".join(body) + "\n",
            directive=previous["directive"] if previous else None,
        )
        if block.directive == "run" and not block.runnable:
            problems.append(
                f"{block.where}: only bash, sh, shell, console and python blocks can run, "
                f"not {language or 'an untagged block'!r}"
            )
        blocks.append(block)
        index = end + 1
    return blocks, problems


def _dedent(line: str, indent: int) -> str:
    """``line`` less the fence's indentation (at most that many leading spaces)."""
    return line[min(indent, len(line) - len(line.lstrip(" "))) :]


def documentation_pages(root: Path = REPO) -> list[Path]:
    """README.md and docs/*.md, in a fixed order."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def read_page(path: Path, root: Path = REPO) -> tuple[list[Block], list[str]]:
    return parse_blocks(path.relative_to(root).as_posix(), path.read_text(encoding="utf-8"))


# --- command lines -------------------------------------------------------------------------


def _drop_comment(line: str) -> str:
    """``line`` without a trailing ``# comment``: as the shell reads it, a ``#`` starts a
    comment only at the start of a word and outside quotes (a URL's ``#`` does not)."""
    quote = ""
    for position, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"':
                continue
        elif char in "'\"":
            quote = char
        elif char == "#" and (position == 0 or line[position - 1].isspace()):
            return line[:position].rstrip()
    return line


def _logical_lines(block: Block) -> list[tuple[int, str]]:
    """The block's commands with their page lines: ``\\`` continuations joined, comments
    and a ``$ `` prompt dropped; in a console block that has prompts, only prompted lines
    are commands (the rest is output)."""
    raw = block.text.splitlines()
    prompted = block.language == "console" and any(line.startswith("$ ") for line in raw)
    commands: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for offset, line in enumerate(raw):
        page_line = block.line + 1 + offset
        if not pending:
            if prompted and not line.startswith("$ "):
                continue
            line = line[2:] if line.startswith("$ ") else line
            start = page_line
        stripped = _drop_comment(line)
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped.strip())
        text = " ".join(part for part in pending if part)
        pending = []
        if text:
            commands.append((start, text))
    if pending:
        commands.append((start, " ".join(part for part in pending if part)))
    return commands


def _simple_commands(text: str) -> list[list[str]]:
    """The words of each simple command in ``text`` (split at pipes, ``&&``, ``;``),
    leading ``VAR=value`` assignments and redirections removed."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    words = list(lexer)
    position = 0
    while position < len(words):
        word = words[position]
        position += 1
        if word in _SEPARATORS:
            commands.append([])
        elif word and set(word) <= set("<>&|") and ("<" in word or ">" in word):
            position += 1  # a redirection and its target
            if commands[-1] and commands[-1][-1].isdigit():
                commands[-1].pop()  # the ``2`` of ``2>``
        elif not commands[-1] and (_ASSIGNMENT.match(word) or word in _PREFIXES):
            continue
        else:
            commands[-1].append(word)
    return [command for command in commands if command]


def ragtune_commands(block: Block) -> tuple[list[CommandLine], list[str]]:
    """The block's ``ragtune`` command lines, and the lines the shell could not split."""
    found: list[CommandLine] = []
    problems: list[str] = []
    for line, text in _logical_lines(block):
        try:
            commands = _simple_commands(text)
        except ValueError as error:  # an unclosed quote
            if re.search(r"(^|\s)ragtune\s", text):
                problems.append(f"{block.page}:{line}: {text}: cannot split: {error}")
            continue
        for words in commands:
            if words[0] == "ragtune" or words[0].endswith("/ragtune"):
                found.append(CommandLine(line, text, tuple(words[1:])))
            elif words[:3] in (["python", "-m", "ragtune"], ["python3", "-m", "ragtune"]):
                found.append(CommandLine(line, text, tuple(words[3:])))
    return found, problems


# --- checking a command line against the CLI -----------------------------------------------
#
# Why ``make_context`` with path existence switched off, rather than click's parser alone:
# ``make_context`` is the one entry point that every click, and typer's own copy of it
# (recent typer releases vendor click as ``typer._click``, with other parser internals), keeps
# public and stable, and it checks everything a user's shell would meet (option names,
# option values, choices, integer ranges, argument counts, required parameters). What it
# must not do here is refuse the paths the docs invent (``--index ./idx`` before an ingest
# made it), so every ``exists=True`` is turned off for the check and restored after; and
# the eager ``--help``/``--version`` callbacks print and raise Exit, which is success.


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """The click exception classes of the click the CLI is built with."""
    types: list[type[BaseException]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as VendoredClickException
    except ImportError:  # an older typer uses click itself
        pass
    else:
        types.append(VendoredClickException)
    return tuple(types)


def _exit_types() -> tuple[type[BaseException], ...]:
    import typer

    return (typer.Exit, click.exceptions.Exit, SystemExit)


def _subcommands(command: object) -> bool:
    return callable(getattr(command, "resolve_command", None))


@contextmanager
def _paths_need_not_exist(root: Any) -> Iterator[None]:
    """Every ``exists=True`` of ``root``'s parameters, all commands down, off for a while:
    for typer's own parameters the flag is on the shared ``parameter_info``, for click's on
    the parameter's ``click.Path`` type."""
    switched: list[object] = []
    pending = [root]
    while pending:
        command = pending.pop()
        pending.extend(getattr(command, "commands", {}).values())
        for param in getattr(command, "params", []):
            descriptor = getattr(param, "type_descriptor", None)
            for holder in (
                getattr(descriptor, "parameter_info", None),
                getattr(param, "type", None),
            ):
                if getattr(holder, "exists", None) is True:
                    holder.exists = False  # type: ignore[union-attr]
                    switched.append(holder)
    try:
        yield
    finally:
        for holder in switched:
            holder.exists = True  # type: ignore[attr-defined]


def check_command(root: Any, words: Sequence[str]) -> str | None:
    """Why ``ragtune WORDS`` would not parse, or None when it would (see above)."""
    failures = _usage_error_types()
    with (
        _paths_need_not_exist(root),
        redirect_stdout(io.StringIO()),
        redirect_stderr(io.StringIO()),
    ):
        try:
            command: Any = root
            ctx = command.make_context("ragtune", list(words))
            while _subcommands(command):
                remaining = [*getattr(ctx, "_protected_args", []), *ctx.args]
                if not remaining:
                    if getattr(command, "invoke_without_command", False):
                        return None
                    return "missing command"
                name, sub, rest = command.resolve_command(ctx, remaining)
                ctx = sub.make_context(name, list(rest), parent=ctx)
                command = sub
        except _exit_types():
            return None  # --help or --version: printed, and exits 0
        except failures as error:
            return _one_line(error)
    return None


def _one_line(error: BaseException) -> str:
    if type(error).__name__ == "NoArgsIsHelpError":
        return "missing command"  # a bare group: it shows its help, with a usage error
    name = getattr(error, "option_name", None)
    if name:  # NoSuchOption; its suggestions are often unrelated names, so left out
        return f"no such option {name}"
    format_message = getattr(error, "format_message", None)
    text = format_message() if callable(format_message) else str(error)
    return " ".join(str(text).split()).rstrip(".") or type(error).__name__


def check_block(block: Block, root: Any) -> list[str]:
    """One line per ``ragtune`` command of the block that would not parse:
    ``PAGE:LINE: COMMAND: REASON``."""
    commands, problems = ragtune_commands(block)
    for command in commands:
        reason = check_command(root, command.words)
        if reason:
            problems.append(f"{block.page}:{command.line}: {command.text}: {reason}")
    return problems


def cli_root() -> Any:
    """The CLI as a click command: typer's own copy of click's classes (recent typer) or
    click's, depending on the typer installed, hence Any."""
    import typer

    from ragtune.cli import build_app

    return typer.main.get_command(build_app())


# --- running blocks ------------------------------------------------------------------------


def venv_bin() -> Path:
    """The directory of the interpreter running the tests (the project's .venv/bin)."""
    return Path(sys.executable).parent


def block_environment() -> dict[str, str]:
    """The environment blocks run in: ``ragtune`` and ``python`` are the venv's, one torch
    thread (2-core machines, several test processes), and never the Hugging Face Hub."""
    env = dict(os.environ)
    env["PATH"] = f"{venv_bin()}{os.pathsep}{env.get('PATH', '')}"
    env["RAGTUNE_TORCH_THREADS"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    env["COLUMNS"] = "200"
    env.pop("PYTHONPATH", None)
    return env


def page_workdir(directory: Path) -> Path:
    """A fresh working directory for one page's blocks, with the repo's examples/ at
    ./examples as in a checkout."""
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "examples"
    if not link.exists():
        link.symlink_to(REPO / "examples", target_is_directory=True)
    return directory


def shell_script(block: Block) -> str:
    """The block as bash runs it: a console block's prompted lines only, prompts dropped."""
    lines = block.text.splitlines()
    if block.language == "console" and any(line.startswith("$ ") for line in lines):
        return "\n".join(line[2:] for line in lines if line.startswith("$ ")) + "\n"
    return block.text


def run_block(
    block: Block,
    workdir: Path,
    scratch: Path,
    shop_address: str = DEMO_SHOP_ADDRESS,
    cpu_limit: int = BLOCK_CPU_S,
    wall_limit: float = BLOCK_WALL_S,
) -> str | None:
    """Runs a runnable block in ``workdir`` (the demo shop's address rewritten to
    ``shop_address``): None when it exits 0 within its limits, else why, with the tail
    of its stderr."""
    if block.language in PYTHON_LANGUAGES:
        source = block.text.replace(DEMO_SHOP_ADDRESS, shop_address)
        script = scratch / f"block_{block.line}.py"
        command = [str(venv_bin() / "python"), str(script)]
    else:
        source = shell_script(block).replace(DEMO_SHOP_ADDRESS, shop_address)
        script = scratch / f"block_{block.line}.sh"
        command = ["bash", "-e", str(script)]
    script.write_text(source, encoding="utf-8")
    # ulimit in a wrapping shell rather than a preexec_fn, which is unsafe in a process
    # with threads (pages run in threads); exec keeps the block's own exit status.
    # The soft limit sends SIGXCPU (reported below); the hard one, reached if that is
    # ignored, sends SIGKILL.
    limits = f"ulimit -S -t {cpu_limit} && ulimit -H -t {cpu_limit + 5}"
    argv = ["bash", "-c", f'{limits} && exec "$@"', "bash", *command]
    # A session of its own, so that a hung block's commands die with it, not only bash.
    process = subprocess.Popen(
        argv,
        cwd=workdir,
        env=block_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=wall_limit)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        return f"{block.where}: did not finish in {wall_limit:.0f} s\n{_tail(stderr)}"
    code = process.returncode
    if code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return (
            f"{block.where}: a command used over {cpu_limit} s of CPU, more than a runnable "
            "block may take (leave slow commands checked only, not run)\n" + _tail(stderr)
        )
    if code != 0:
        return f"{block.where}: exited {code}\n{_tail(stderr) or _tail(stdout)}"
    return None


def _tail(output: str | bytes | None, lines: int = 25) -> str:
    if isinstance(output, bytes):
        output = output.decode("utf-8", "replace")
    return "\n".join((output or "").rstrip().splitlines()[-lines:])
