"""Metadata filters: which chunks a search may return (LlamaIndex's names).

A filter is a key, an operator and a value; several filters all must hold.
``url`` and ``title`` are the chunk's own columns; ``site`` is the host of the
chunk's URL; any other key is looked up in the document's metadata. A string
compares as a string (ISO dates such as ``fetched_at`` or ``date`` order
correctly), a number as a number, a boolean as a boolean.

Each store translates filters into its own query language, so they apply
before the top-k cut, not after it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ragtune.errors import InvalidQueryError

Operator = Literal["==", "!=", ">", ">=", "<", "<=", "in", "prefix"]
OPERATORS: tuple[str, ...] = ("==", "!=", ">", ">=", "<", "<=", "in", "prefix")
FilterValue = str | int | float | bool
# Keys every chunk has whatever its source; the rest come from the documents.
COLUMN_KEYS = ("url", "title")
BUILTIN_KEYS = (*COLUMN_KEYS, "site")
# Command-line spellings, longest first so ">=" is not read as ">".
_SPELLINGS = (
    ("^=", "prefix"),
    (">=", ">="),
    ("<=", "<="),
    ("!=", "!="),
    ("==", "=="),
    ("=", "=="),
    (">", ">"),
    ("<", "<"),
)
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
MAX_FILTERS = 32
MAX_IN_VALUES = 1000


@dataclass(frozen=True)
class MetadataFilter:
    key: str
    value: FilterValue | tuple[FilterValue, ...]
    operator: Operator = "=="

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not _KEY.match(self.key):
            raise InvalidQueryError(f"invalid filter key {self.key!r}")
        if self.operator not in OPERATORS:
            raise InvalidQueryError(
                f"unknown filter operator {self.operator!r}; use one of {', '.join(OPERATORS)}"
            )
        values = self.value if isinstance(self.value, tuple) else (self.value,)
        if self.operator == "in":
            if not isinstance(self.value, tuple) or not 0 < len(self.value) <= MAX_IN_VALUES:
                raise InvalidQueryError(
                    f"filter {self.key} in: give 1 to {MAX_IN_VALUES} values as a tuple"
                )
        elif isinstance(self.value, tuple):
            raise InvalidQueryError(f"filter {self.key} {self.operator}: takes one value")
        for value in values:
            if not isinstance(value, str | int | float | bool):
                raise InvalidQueryError(
                    f"filter {self.key}: values are strings, numbers or booleans, "
                    f"not {type(value).__name__}"
                )
        if self.operator == "prefix" and not isinstance(self.value, str):
            raise InvalidQueryError(f"filter {self.key} prefix: the prefix must be a string")

    @property
    def values(self) -> tuple[FilterValue, ...]:
        return self.value if isinstance(self.value, tuple) else (self.value,)

    def describe(self) -> str:
        return f"{self.key} {self.operator} {self.value!r}"


@dataclass(frozen=True)
class MetadataFilters:
    """Filters that must all hold."""

    filters: tuple[MetadataFilter, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if len(self.filters) > MAX_FILTERS:
            raise InvalidQueryError(f"{len(self.filters)} filters; the limit is {MAX_FILTERS}")

    def __bool__(self) -> bool:
        return bool(self.filters)

    def check_keys(self, known: Iterable[str]) -> None:
        """Raise on a key no document in the index has: almost always a typo, and
        a filter on it would silently match nothing."""
        available = set(known) | set(BUILTIN_KEYS)
        for item in self.filters:
            if item.key not in available:
                raise InvalidQueryError(
                    f"unknown filter key {item.key!r}; this index has: "
                    f"{', '.join(sorted(available))}"
                )


FiltersArgument = MetadataFilters | Mapping[str, Any] | Iterable[str] | None


def as_filters(filters: FiltersArgument) -> MetadataFilters:
    """Filters from a MetadataFilters, a ``{key: value}`` mapping (a list value means
    "any of these"), or command-line expressions such as ``site=example.com``."""
    if filters is None:
        return MetadataFilters()
    if isinstance(filters, MetadataFilters):
        return filters
    if isinstance(filters, Mapping):
        return MetadataFilters(tuple(_from_mapping_item(k, v) for k, v in filters.items()))
    if isinstance(filters, str):
        return MetadataFilters((parse_filter(filters),))
    return MetadataFilters(tuple(parse_filter(text) for text in filters))


def parse_filter(text: str) -> MetadataFilter:
    """``key=value``, ``key!=value``, ``key>=value`` (also >, <, <=), ``key^=prefix``,
    ``key=a|b`` (any of). A value that reads as JSON (5, 2.5, true, "quoted") is
    that JSON value; anything else is a string."""
    key, operator, raw = _split(text)
    if operator == "==" and "|" in raw:
        return MetadataFilter(key, tuple(_value(part) for part in raw.split("|")), "in")
    value = raw if operator == "prefix" else _value(raw)
    return MetadataFilter(key, value, operator)  # type: ignore[arg-type]


def _split(text: str) -> tuple[str, str, str]:
    """Key, operator, value: the operator is the first one in the text (the longest
    spelling where two start at one place), so values may contain ``=`` or ``>``."""
    found = [(text.find(spelling), -len(spelling), spelling, op) for spelling, op in _SPELLINGS]
    found = [item for item in found if item[0] > 0]
    if not found:
        raise InvalidQueryError(
            f"cannot read filter {text[:80]!r}; write key=value, key>=value or key^=prefix"
        )
    position, _, spelling, operator = min(found)
    return text[:position].strip(), operator, text[position + len(spelling) :]


def _from_mapping_item(key: str, value: Any) -> MetadataFilter:
    if isinstance(value, list | tuple | set | frozenset):
        return MetadataFilter(key, tuple(value), "in")
    return MetadataFilter(key, value)


def _value(raw: str) -> FilterValue:
    raw = raw.strip()
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, or nested too deeply to be a scalar
        return raw
    return parsed if isinstance(parsed, str | int | float | bool) else raw


def like_prefix(prefix: str) -> str:
    """A SQL LIKE pattern matching strings that start with ``prefix`` (escape: backslash)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
