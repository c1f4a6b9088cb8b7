#!/usr/bin/env python
"""Write docs/configuration.md's generated tables from the code; --check: exit 1 if stale.

The page's prose is written by hand; between ``<!-- generated: NAME -->`` and
``<!-- end generated -->`` each table is made here: ``options`` from the CLI itself
(every command's every option, its default and help text), ``environment`` from
``ragtune.environment.ENVIRONMENT_VARIABLES``, ``limits`` from the module constants
named in LIMITS below. Nothing machine-dependent goes in (no home paths, no CPU
counts), so every machine writes the same page.

    python scripts/gen_config_docs.py          # rewrite the generated parts
    python scripts/gen_config_docs.py --check  # exit 1 when they are out of date
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "configuration.md"
START = re.compile(r"^<!-- generated: (?P<name>[a-z-]+) -->$", re.MULTILINE)
END = "<!-- end generated -->"


# --- options -------------------------------------------------------------------------------


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Each command, as ``ragtune a b``, in the order --help lists them: every command
    that runs (``ragtune models`` does, ``ragtune eval`` only shows its help), and any
    group with options of its own (``ragtune --version``)."""
    subcommands = getattr(command, "commands", None) or {}
    runs = not subcommands or getattr(command, "invoke_without_command", False)
    if (runs and path) or _visible(command):
        yield " ".join(("ragtune", *path)), command
    for name, sub in subcommands.items():
        if not getattr(sub, "hidden", False):
            yield from _commands(sub, (*path, name))


def _visible(command: Any) -> list[Any]:
    """The parameters --help shows, but --help itself (every command has it)."""
    return [p for p in command.params if not getattr(p, "hidden", False) and p.name != "help"]


def _is_argument(param: Any) -> bool:
    return not any(opt.startswith("-") for opt in param.opts)


def _names(param: Any) -> str:
    if _is_argument(param):
        shown = (param.metavar or param.name).upper()
        return f"`{shown}{'...' if param.nargs == -1 else ''}` (argument)"
    names = ", ".join(f"`{opt}`" for opt in param.opts)
    if param.secondary_opts:
        names += " / " + ", ".join(f"`{opt}`" for opt in param.secondary_opts)
    return names


def _default(param: Any) -> str:
    if param.required:
        return "required"
    default = param.default
    if callable(default):
        return "computed"
    if isinstance(default, bool):
        if param.secondary_opts:
            return f"`{param.opts[0] if default else param.secondary_opts[0]}`"
        return "on" if default else "off"
    if default is None or default == "" or default == () or default == []:
        return "—"
    if isinstance(default, list | tuple):
        return ", ".join(f"`{item}`" for item in default)
    if isinstance(default, float) and default.is_integer():
        return f"`{default:g}`"
    return f"`{default}`"


def _choices(param: Any) -> Sequence[str]:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and getattr(descriptor, "is_choice", False):
        return [str(getattr(choice, "value", choice)) for choice in descriptor.choices or ()]
    return list(getattr(getattr(param, "type", None), "choices", None) or ())


def _meaning(param: Any) -> str:
    text = " ".join((getattr(param, "help", None) or "").split())
    choices = _choices(param)
    if choices and not all(choice in text for choice in choices):
        text = f"{text} One of: {', '.join(choices)}.".strip()
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_options() -> str:
    import typer

    from ragtune.cli import build_app

    root = typer.main.get_command(build_app())
    rows = ["| Command | Option | Default | Meaning |", "| --- | --- | --- | --- |"]
    for name, command in _commands(root):
        if not _visible(command):
            rows.append(f"| `{name}` | (no options) | | |")
        for param in _visible(command):
            cells = (f"`{name}`", _names(param), _default(param), _meaning(param))
            rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(rows)


# --- environment variables -----------------------------------------------------------------


def render_environment() -> str:
    from ragtune.environment import ENVIRONMENT_VARIABLES

    rows = ["| Variable | Default | Meaning | Read by |", "| --- | --- | --- | --- |"]
    for variable in ENVIRONMENT_VARIABLES:
        readers = ", ".join(f"`{reader}`" for reader in variable.read_by)
        cells = (f"`{variable.name}`", variable.default, variable.meaning, readers)
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(rows)


# --- limits --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    where: str  # "module:NAME", or "module:Class(parameter)" for a constructor's default
    unit: str  # bytes, count, characters or seconds
    meaning: str
    flag: str = ""  # the option that changes it, if one does

    def value(self) -> Any:
        module_name, _, name = self.where.partition(":")
        module = importlib.import_module(module_name)
        if name.endswith(")"):
            owner, _, parameter = name[:-1].partition("(")
            return inspect.signature(getattr(module, owner)).parameters[parameter].default
        return getattr(module, name)


LIMITS: tuple[Limit, ...] = (
    Limit(
        "ragtune.extract.files:MAX_FILE_BYTES",
        "bytes",
        "Largest local file read (ingest, sync, extract); a bigger one is skipped or refused.",
    ),
    Limit("ragtune.web.fetch:DEFAULT_MAX_BYTES", "bytes", "Largest web page body read."),
    Limit(
        "ragtune.web.fetch:Fetcher(max_redirects)",
        "count",
        "Redirects followed for one URL, each hop checked like the first.",
    ),
    Limit(
        "ragtune.web.render:MAX_RENDER_REDIRECTS",
        "count",
        "Redirects followed by a page rendered in Chromium.",
    ),
    Limit("ragtune.web.urls:MAX_URL_LENGTH", "characters", "Longest URL fetched."),
    Limit(
        "ragtune.web.visits:MAX_CRAWL_DELAY",
        "seconds",
        "Longest robots.txt Crawl-delay obeyed; a host asking for more is not crawled.",
    ),
    Limit("ragtune.web.robots:ROBOTS_MAX_BYTES", "bytes", "Largest robots.txt read."),
    Limit("ragtune.web.sitemaps:MAX_SITEMAPS", "count", "Sitemaps read for one crawl."),
    Limit("ragtune.web.sitemaps:MAX_SITEMAP_BYTES", "bytes", "Largest sitemap, uncompressed."),
    Limit(
        "ragtune.extract.pdf:MAX_PDF_PAGES", "count", "PDF pages read; later pages are left out."
    ),
    Limit("ragtune.extract.word:MAX_UNPACKED_BYTES", "bytes", "Largest .docx, unpacked."),
    Limit(
        "ragtune.questions:MAX_QUERY_CHARS",
        "characters",
        "Longest question (retrieve, ask, chat, serve).",
    ),
    Limit("ragtune.index.filters:MAX_FILTERS", "count", "Metadata filters in one query."),
    Limit("ragtune.index.filters:MAX_IN_VALUES", "count", "Values in one `key=a|b` filter."),
    Limit("ragtune.train.data.records:MAX_FILE_BYTES", "bytes", "Largest training dataset file."),
    Limit(
        "ragtune.train.data.records:MAX_LINE_BYTES",
        "bytes",
        "Longest line of a JSONL or text dataset.",
    ),
    Limit(
        "ragtune.eval.squad:MAX_QA_BYTES",
        "bytes",
        "Largest SQuAD-format question file (eval, compare).",
    ),
    Limit(
        "ragtune.serve.config:MAX_BODY_BYTES",
        "bytes",
        "`ragtune serve`: largest JSON request body.",
        "--max-body-mb",
    ),
    Limit(
        "ragtune.serve.config:MAX_UPLOAD_BYTES",
        "bytes",
        "`ragtune serve`: largest upload request.",
        "--max-upload-mb",
    ),
    Limit(
        "ragtune.serve.config:MAX_MESSAGES",
        "count",
        "`ragtune serve`: messages in one chat request.",
    ),
    Limit(
        "ragtune.serve.schemas:MAX_TOP_K", "count", "`ragtune serve`: largest `top_k` of a request."
    ),
    Limit(
        "ragtune.serve.schemas:MAX_EMBEDDING_INPUTS",
        "count",
        "`ragtune serve`: texts in one /v1/embeddings request.",
    ),
    Limit("ragtune.serve.uploads:MAX_FILES", "count", "`ragtune serve`: files in one upload."),
    Limit(
        "ragtune.serve.sources_api:MAX_URLS",
        "count",
        "`ragtune serve`: URLs in one request to add sources.",
    ),
    Limit(
        "ragtune.serve.sources_api:MAX_PAGES",
        "count",
        "`ragtune serve`: largest `max_pages` of a crawl request.",
    ),
    Limit(
        "ragtune.serve.sources_api:MAX_DEPTH",
        "count",
        "`ragtune serve`: largest `max_depth` of a crawl request.",
    ),
    Limit(
        "ragtune.serve.jobs:MAX_QUEUED_PER_INDEX",
        "count",
        "`ragtune serve`: jobs waiting for one index; more are answered 429.",
    ),
)


def _amount(value: Any, unit: str) -> str:
    if unit == "bytes":
        for size, name in ((1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB")):
            if value >= size and value % size == 0:
                return f"{value // size} {name}"
        return f"{value:,} bytes"
    if unit == "seconds":
        return f"{value:g} s"
    text = f"{value:,}"
    return text if unit == "count" else f"{text} {unit}"


def render_limits() -> str:
    rows = ["| Limit | Value | Changed by | Constant |", "| --- | --- | --- | --- |"]
    for limit in LIMITS:
        flag = f"`{limit.flag}`" if limit.flag else "—"
        cells = (limit.meaning, _amount(limit.value(), limit.unit), flag, f"`{limit.where}`")
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(rows)


GENERATORS: dict[str, Callable[[], str]] = {
    "options": render_options,
    "environment": render_environment,
    "limits": render_limits,
}


# --- the page ------------------------------------------------------------------------------


class PageError(Exception):
    pass


def regenerate(text: str) -> str:
    """``text`` with every generated part made again; PageError on a marker without its
    end, or a name nothing generates."""
    parts: list[str] = []
    position = 0
    for start in START.finditer(text):
        if start.start() < position:
            raise PageError(f"generated part {start['name']!r} starts inside another")
        name = start["name"]
        if name not in GENERATORS:
            raise PageError(f"no generator for {name!r}; known: {', '.join(GENERATORS)}")
        end = text.find(END, start.end())
        if end < 0:
            raise PageError(f"generated part {name!r} has no {END}")
        parts.append(text[position : start.end()])
        parts.append("\n" + GENERATORS[name]() + "\n")
        position = end
    parts.append(text[position:])
    return "".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    parser.add_argument("--page", type=Path, default=PAGE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        current = args.page.read_text(encoding="utf-8")
        fresh = regenerate(current)
    except (OSError, PageError) as error:
        print(f"error: {args.page}: {error}", file=sys.stderr)
        return 1
    if args.check:
        if fresh != current:
            print(
                f"error: {args.page} is out of date with the code; "
                "run python scripts/gen_config_docs.py",
                file=sys.stderr,
            )
            return 1
        return 0
    if fresh != current:
        args.page.write_text(fresh, encoding="utf-8")
        print(f"wrote {args.page}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
