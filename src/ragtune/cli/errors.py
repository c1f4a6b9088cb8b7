"""Running the app so that every failure is one ``error:`` line on stderr.

Exit codes: 0 done, 1 a RagtuneError (what the user asked for cannot be done),
2 a usage error (the command line itself is wrong), 130 interrupted.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from ragtune.errors import RagtuneError
from ragtune.terminal import err

try:  # newer typer (0.29 here) vendors click as typer._click; its errors are those classes
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer uses click itself
    # mypy sees two modules bound to one name; only one of them exists at run time.
    from click import exceptions as click_errors  # type: ignore[no-redef]


def run_app(app: typer.Typer) -> NoReturn:
    """Run ``app`` on ``sys.argv`` and exit with its code, failures printed on one line."""
    try:
        # Not standalone: click's usage errors come back here, to be printed on one
        # line like every other error rather than as a panel that echoes the input.
        # Named "ragtune" under ``python -m ragtune`` too: the usage lines and the
        # "see ragtune ... --help" of an error name the command a user types.
        code = app(standalone_mode=False, prog_name="ragtune")
    except RagtuneError as error:
        err.print(f"error: {error}")
        sys.exit(1)
    except click_errors.NoArgsIsHelpError as error:
        # ``ragtune`` or a group alone: typer's Rich help has already printed the help
        # (on stdout) while making the error, whose own text is then empty.
        if error.format_message().strip():
            error.show()
        sys.exit(2)
    except click_errors.UsageError as error:
        err.print(f"error: {_usage_error(error, app)}")
        sys.exit(2)
    except click_errors.ClickException as error:  # e.g. a file option that cannot be opened
        err.print(f"error: {error.format_message()}")
        sys.exit(error.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    if code == 130:
        err.print("interrupted")
    # As click's standalone mode does: a finished command exits, with its code.
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(error: click_errors.UsageError, app: typer.Typer) -> str:
    """Click's message on one line, and the help to read: the failing command's."""
    message = " ".join(error.format_message().split())
    # typer checks a Literal option through pydantic-style validation and prefixes its
    # reason with "Value error, ", which tells a user nothing.
    message = message.replace(": Value error, ", ": ")
    command = error.ctx.command_path if error.ctx else _command_path(app, sys.argv[1:])
    return f"{message} (see {command} --help)"


def _command_path(app: typer.Typer, args: list[str]) -> str:
    """``ragtune`` and the (sub)command names that ``args`` start with, options skipped.

    For the errors click raises while splitting a command's options, before it has a
    context to name the command by (``ragtune tokenizer train -o`` with no value)."""
    command: object = typer.main.get_command(app)
    path = ["ragtune"]
    for word in args:
        if word.startswith("-"):
            continue  # an option of the group, such as --version
        subcommands: dict[str, object] = getattr(command, "commands", {})
        if word not in subcommands:
            break
        command = subcommands[word]
        path.append(word)
    return " ".join(path)
