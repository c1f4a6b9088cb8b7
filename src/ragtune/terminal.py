"""Printing untrusted text to a terminal: no markup, no control sequences.

Pages, files, URLs, file names and model output reach the screen. Two things in
them can act instead of being shown:

- **Rich markup and emoji codes**: ``[/]`` or ``[link=...]`` in a URL or a file
  name crashed Rich (``MarkupError``) or hid part of the text, and ``:smile:``
  became a picture. The consoles made here interpret neither; a label that
  should be bold is built as a styled ``Text`` by the caller.
- **Control characters**: ESC sequences clear the screen, rewrite lines, plant
  OSC 8 hyperlinks or write the clipboard (OSC 52); a carriage return or a
  bidirectional override hides text behind other text. ``printable`` removes
  them from every string these consoles print.

JSON output keeps the data exact: ``json_for_terminal`` escapes the same
characters as ``\\uXXXX``, which any JSON reader turns back into them.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from rich.console import Console
from rich.text import Text

# C0 controls but tab and newline, DEL, C1 controls (0x9b is an 8-bit CSI), and the
# bidirectional embeddings, overrides and isolates ("Trojan Source").
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` without characters a terminal would act on instead of showing."""
    return _UNPRINTABLE.sub("", text)


def json_for_terminal(data: Any, indent: int | None = 2) -> str:
    """``data`` as JSON, non-ASCII text kept readable, terminal controls escaped."""
    text = json.dumps(data, ensure_ascii=False, indent=indent)
    # json.dumps already escapes U+0000-U+001F; DEL, C1 and bidi controls it leaves raw.
    return _UNPRINTABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


class SafeConsole(Console):
    """A Rich console for untrusted text: markup, emoji codes and highlighting are off
    unless a call asks for them, and control characters never reach the terminal."""

    def __init__(self, *, stderr: bool = False) -> None:
        super().__init__(stderr=stderr, soft_wrap=True, markup=False, emoji=False, highlight=False)

    def render_str(self, text: str, **options: Any) -> Text:
        return super().render_str(printable(text), **options)

    def print_data(self, data: Any) -> None:
        """Print ``data`` as JSON (``--json`` output), exactly and safely."""
        self.file.write(json_for_terminal(data) + "\n")
        self.file.flush()


def styled(text: str, style: str) -> Text:
    """A label in ``style``, from text that is shown as it is (after ``printable``)."""
    return Text(printable(text), style=style)


def plain(text: str) -> Text:
    """Untrusted text as a ``Text`` to assemble with styled labels."""
    return Text(printable(text))


out = SafeConsole()
err = SafeConsole(stderr=True)


# Where stderr is not a terminal, long work prints a progress line this often (seconds).
PROGRESS_INTERVAL_VARIABLE = "RAGTUNE_PROGRESS_INTERVAL"
DEFAULT_PROGRESS_INTERVAL = 5.0


def progress_interval() -> float:
    """Seconds between plain progress lines: $RAGTUNE_PROGRESS_INTERVAL, 5 by default."""
    try:
        value = float(os.environ.get(PROGRESS_INTERVAL_VARIABLE, DEFAULT_PROGRESS_INTERVAL))
    except ValueError:
        return DEFAULT_PROGRESS_INTERVAL
    return max(0.05, value)
