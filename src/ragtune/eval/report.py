"""Markdown tables for evaluation reports (docs/benchmarks.md, ``--markdown FILE``)."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1
) -> str:
    """A GitHub-flavoured Markdown table; columns from ``numeric_from`` on are right-aligned.

    Cells may hold model output or file names: a ``|`` would end the cell and a
    line break would end the row, so both are escaped or flattened.
    """
    if any(len(row) != len(header) for row in rows):
        raise ValueError("every row needs one cell per header column")
    rule = ["---" if column < numeric_from else "---:" for column in range(len(header))]
    lines = [_row(header), _row(rule), *(_row(row) for row in rows)]
    return "\n".join(lines) + "\n"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
