"""Main-content extraction by several extractors at once, ragtune's Markdown as the base.

``extract_html`` (trafilatura plus clean-ups) gives the Markdown: headings, lists,
tables and code blocks. resiliparse (``extractors.py``) reads the same page in
about a twentieth of the time and keeps more of it. Where the two disagree a
small learned selector (two logistic regressions, plain JSON numbers in
``ensemble_selector.json``) decides, block by block:

- a line resiliparse keeps and the Markdown lacks is *added* (a lead paragraph,
  a box inside the article that trafilatura took for boilerplate), at the place
  it has in the page;
- a paragraph, heading or list item of the Markdown is *dropped* when the votes
  call it boilerplate ("Mehr zum Thema:", a credit line). Tables and code blocks
  are never cut, so the Markdown's structure stays whole.

The selector's features are agreement (does the other extractor keep it?),
position (inside the span of the base's content, next to kept lines), link
density, length and punctuation. In the "best" mode, pages with a block the
selector is unsure about also ask trafilatura in precision mode and
readability-lxml, and a second selector that sees their votes decides there.

The selector was fitted by ``bench/extraction.py --fit`` on a fixed development
split of trafilatura's evaluation set (pages whose URL hash falls outside the
30% held out); the figures of each mode, on the held-out part too, are in that
script's output. Deterministic: no randomness, no network, the same page gives
the same Markdown. ``explain_extraction`` says where each output block came from.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

from ragtune.extract.extractors import (
    anchor_keys,
    as_text,
    comparison_key,
    readability_key,
    resiliparse_lines,
    trafilatura_precision_key,
)
from ragtune.extract.html import Block, ExtractedPage, extract_html

Mode = Literal["fast", "best"]
MODES: tuple[Mode, ...] = ("fast", "best")

RAGTUNE = "ragtune"
RESILIPARSE = "resiliparse"
TRAFILATURA_PRECISION = "trafilatura-precision"
READABILITY = "readability"

SELECTOR_PATH = Path(__file__).with_name("ensemble_selector.json")
# A page whose selector probabilities all lie outside this band is decided
# without the slow voters of the "best" mode.
_UNSURE = (0.25, 0.75)
# On 9 in 10 development pages the selector drops under 2% of the base's text, and on
# 8 of 681 more than 30%; a vote to drop more than this share is not trusted (a 5 MB
# page of 2,800 paragraphs lost all but one before this cap).
_MOST_DROPPED = 0.3
_SENTENCE_END = tuple('.!?:"“”»«)')
_FENCE = ("```", "~~~")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class Candidate:
    """A block the selector decides on, with the features it reads: a line of another
    extractor that the base lacks ("add"), or a cuttable line of the base ("keep")."""

    kind: Literal["add", "keep"]
    index: int  # into the other extractor's lines ("add") or the base's lines ("keep")
    text: str
    features: dict[str, float]


@dataclass
class _Reading:
    """One page as the base and resiliparse read it, and the slow votes once asked."""

    page: ExtractedPage
    base_lines: list[str]
    base_keys: list[str]
    cuttable: list[bool]  # paragraphs, headings, list items; never table rows or code
    base_key: str
    other_lines: list[str]
    other_keys: list[str]
    covered: list[bool]  # which of the other's lines the base holds too
    other_key: str
    anchors: frozenset[str]
    votes: dict[str, str] = field(default_factory=dict)


def extract_combined(
    html: str | bytes, url: str | None = None, extractor: Mode = "fast"
) -> ExtractedPage:
    """The main content of an HTML page as ragtune Markdown, decided by several extractors.

    ``extractor="fast"`` (the default) weighs resiliparse's reading against ragtune's
    own; ``"best"`` also asks trafilatura (precision mode) and readability-lxml on
    pages where the selector is unsure. Raises ExtractionError where ``extract_html``
    does (binary data, no readable text); ``metadata["extractor"]`` names the mode and
    ``blocks`` says where each block came from (as ``explain_extraction``).
    """
    page, blocks = _combine(html, url, extractor)
    page.blocks = blocks
    return page


def explain_extraction(
    html: str | bytes, url: str | None = None, extractor: Mode = "fast"
) -> list[Block]:
    """The blocks of ``extract_combined``'s Markdown in order (a line, or a whole code
    block), each with the extractors whose output holds its text: ``ragtune`` first
    where the block is the base's; a block without it was added by the vote."""
    return _combine(html, url, extractor)[1]


def candidates(html: str | bytes, url: str | None = None) -> list[Candidate]:
    """Every block the selector would decide on, with every feature (the slow voters'
    too): what ``bench/extraction.py --fit`` learns from."""
    reading = _read(extract_html(html, url=url), html)
    if reading is None:
        return []
    _ask_slow_voters(reading, html, url)
    return _candidates(reading)


def _combine(html: str | bytes, url: str | None, mode: Mode) -> tuple[ExtractedPage, list[Block]]:
    if mode not in MODES:
        raise ValueError(f"extractor must be one of {', '.join(MODES)}, not {mode!r}")
    # extract_html raises for binary data or no text: then there is nothing to vote on.
    base = extract_html(html, url=url)
    reading = _read(base, html)
    if reading is None:  # resiliparse found nothing to weigh the base against
        page = base
        page.metadata["extractor"] = f"ensemble-{mode}"
        return page, _blocks(page.markdown.splitlines(), {}, {})
    found = _candidates(reading)
    models = load_selector()["fast"]
    if mode == "best" and any(_unsure(models, candidate) for candidate in found):
        _ask_slow_voters(reading, html, url)
        found = _candidates(reading)
        models = load_selector()["best"]
    chosen = [candidate for candidate in found if _chosen(models, candidate)]
    dropped = {c.index for c in found if c.kind == "keep"} - {
        c.index for c in chosen if c.kind == "keep"
    }
    added = sorted(c.index for c in chosen if c.kind == "add")
    if _dropped_share(reading, dropped) > _MOST_DROPPED:
        # The selector would throw away much of the base: it is out of its depth on
        # this page, and the base's own judgement is the safer one.
        dropped = set()
    lines, origins = _assemble(reading, dropped, added)
    blocks = _blocks(lines, origins, reading.votes | {RESILIPARSE: reading.other_key})
    page = reading.page
    if dropped or added:
        # The plain text is the Markdown itself: the base's lazily rendered plain text
        # would still hold the dropped lines and lack the added ones.
        page = ExtractedPage(
            markdown=_tidy("\n".join(lines)), title=page.title, metadata=dict(page.metadata)
        )
    page.metadata["extractor"] = f"ensemble-{mode}"
    return page, blocks


def _read(page: ExtractedPage, html: str | bytes) -> _Reading | None:
    text = as_text(html)
    other_lines = resiliparse_lines(text)
    if not other_lines:
        return None
    base_lines = page.markdown.splitlines()
    base_keys = [comparison_key(line) for line in base_lines]
    base_key = " ".join(key for key in base_keys if key)
    other_keys = [comparison_key(line) for line in other_lines]
    return _Reading(
        page=page,
        base_lines=base_lines,
        base_keys=base_keys,
        cuttable=_cuttable(base_lines),
        base_key=base_key,
        other_lines=other_lines,
        other_keys=other_keys,
        covered=[bool(key) and key in base_key for key in other_keys],
        other_key=" ".join(key for key in other_keys if key),
        anchors=anchor_keys(text),
    )


def _dropped_share(reading: _Reading, dropped: set[int]) -> float:
    lost = sum(len(reading.base_keys[index]) for index in dropped)
    return lost / max(1, len(reading.base_key))


def _ask_slow_voters(reading: _Reading, html: str | bytes, url: str | None) -> None:
    text = as_text(html)
    reading.votes[TRAFILATURA_PRECISION] = trafilatura_precision_key(text, url)
    reading.votes[READABILITY] = readability_key(text)


def _cuttable(lines: Sequence[str]) -> list[bool]:
    """Which lines may be dropped alone: not a table row, not inside a code block,
    not blank. Cutting those would break the Markdown's structure."""
    flags = []
    fenced = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(_FENCE):
            fenced = not fenced
            flags.append(False)
            continue
        flags.append(not fenced and bool(stripped) and not stripped.startswith("|"))
    return flags


def _candidates(reading: _Reading) -> list[Candidate]:
    return _add_candidates(reading) + _keep_candidates(reading)


def _add_candidates(reading: _Reading) -> list[Candidate]:
    covered = [index for index, flag in enumerate(reading.covered) if flag]
    if not covered:  # the two readings share nothing: no place to put a line
        return []
    first, last, count = covered[0], covered[-1], len(reading.other_lines)
    found = []
    for index, (line, key) in enumerate(zip(reading.other_lines, reading.other_keys, strict=True)):
        if reading.covered[index] or not key:
            continue
        features = {
            "inside": float(first < index < last),
            "before": float(index < first),
            "log_distance": math.log1p(min(abs(index - other) for other in covered)),
            "previous_kept": float(index > 0 and reading.covered[index - 1]),
            "next_kept": float(index + 1 < count and reading.covered[index + 1]),
            "log_length": math.log1p(len(line)),
            "sentence_end": float(line.endswith(_SENTENCE_END)),
            "digits": sum(char.isdigit() for char in line) / len(line),
            "kept_share": len(covered) / count,
            "long": float(len(key.split()) >= 8),
            "link_density": _link_density(key, reading.anchors),
        }
        features.update(_votes(key, reading.votes))
        found.append(Candidate("add", index, line, features))
    return found


def _keep_candidates(reading: _Reading) -> list[Candidate]:
    indexes = [i for i, flag in enumerate(reading.cuttable) if flag and reading.base_keys[i]]
    count = len(indexes)
    found = []
    for position, index in enumerate(indexes):
        line, key = reading.base_lines[index].strip(), reading.base_keys[index]
        features = {
            "in_other": float(key in reading.other_key),
            "link_density": _link_density(key, reading.anchors),
            "heading": float(line.startswith("#")),
            "list_item": float(
                line.startswith(("- ", "* ", "+ ")) or line[:3].rstrip(".").isdigit()
            ),
            "log_length": math.log1p(len(key)),
            "sentence_end": float(line.endswith(_SENTENCE_END)),
            "colon_end": float(line.endswith(":")),
            "at_start": float(position < 2),
            "at_end": float(position >= count - 2),
            "relative_position": position / max(1, count - 1),
            "log_blocks": math.log1p(count),
        }
        features.update(_votes(key, reading.votes))
        found.append(Candidate("keep", index, line, features))
    return found


def _votes(key: str, votes: dict[str, str]) -> dict[str, float]:
    return {f"in_{name}": float(key in vote) for name, vote in votes.items()}


def _link_density(key: str, anchors: frozenset[str]) -> float:
    """The share of a block's text that is link text: 1 for a block that is one link."""
    if key in anchors:
        return 1.0
    linked = sum(len(anchor) for anchor in anchors if len(anchor) >= 2 and anchor in key)
    return min(1.0, linked / len(key))


def _assemble(
    reading: _Reading, dropped: set[int], added: list[int]
) -> tuple[list[str], dict[int, int]]:
    """The base's lines less the dropped ones, with each added line as a paragraph of
    its own after the base line that holds its nearest kept predecessor. Returns the
    lines and, for each added line's position among them, its index in the other's lines."""
    after: dict[int, list[int]] = {}
    for index in added:
        after.setdefault(_anchor(reading, index), []).append(index)
    lines: list[str] = []
    origins: dict[int, int] = {}

    def put(indexes: list[int]) -> None:
        for index in indexes:
            lines.append("")
            origins[len(lines)] = index
            lines.append(_as_paragraph(reading.other_lines[index]))
            lines.append("")

    put(after.get(-1, []))
    for number, line in enumerate(reading.base_lines):
        if number not in dropped:
            lines.append(line)
        put(after.get(number, []))
    return lines, origins


def _anchor(reading: _Reading, index: int) -> int:
    """The base line an added line goes after: the end of the paragraph that holds
    the nearest earlier line both readings share (-1: before everything)."""
    earlier = [i for i in range(index - 1, -1, -1) if reading.covered[i]]
    if not earlier:
        return -1
    key = reading.other_keys[earlier[0]]
    for number, base in enumerate(reading.base_keys):
        if base and (key in base or base in key):
            return _paragraph_end(reading, number)
    return len(reading.base_lines) - 1


def _paragraph_end(reading: _Reading, number: int) -> int:
    """The last line of the block that holds line ``number``: a code block, a table
    or a list is never split by an added line."""
    lines = reading.base_lines
    fences = [i for i, line in enumerate(lines) if line.strip().startswith(_FENCE)]
    opened = [i for i in fences if i <= number]
    if len(opened) % 2 == 1:  # inside a code block: after its closing fence
        closing = [i for i in fences if i > opened[-1]]
        return closing[0] if closing else len(lines) - 1
    end = number
    while end + 1 < len(lines) and lines[end + 1].strip():
        if lines[end + 1].strip().startswith(_FENCE):
            break
        end += 1
    return end


def _as_paragraph(line: str) -> str:
    """Another extractor's line as a Markdown paragraph or list item: whitespace runs
    (table cells come tab-separated) made one space, a leading marker escaped so the
    text stays text."""
    text = " ".join(line.split())
    if text.startswith("- "):
        return text
    if text[:1] in ("#", ">", "*", "+", "-", "|", "`", "="):
        return "\\" + text
    return text


def _blocks(lines: Sequence[str], origins: dict[int, int], votes: dict[str, str]) -> list[Block]:
    """The output's blocks with their sources: a whole code block is one block, any
    other non-blank line is one."""
    blocks: list[Block] = []
    pending: list[str] = []
    for number, line in enumerate(lines):
        stripped = line.strip()
        if pending:
            pending.append(line)
            if stripped.startswith(_FENCE):
                blocks.append(_block("\n".join(pending), True, votes))
                pending = []
        elif stripped.startswith(_FENCE):
            pending = [line]
        elif stripped:
            blocks.append(_block(line, number not in origins, votes))
    if pending:
        blocks.append(_block("\n".join(pending), True, votes))
    return blocks


def _block(text: str, from_base: bool, votes: dict[str, str]) -> Block:
    key = comparison_key(text)
    voters = tuple(name for name, vote in sorted(votes.items()) if key and key in vote)
    return Block(text, ((RAGTUNE,) if from_base else ()) + voters)


def _chosen(models: dict[str, _Model], candidate: Candidate) -> bool:
    model = models[candidate.kind]
    return model.probability(candidate.features) >= model.threshold


def _unsure(models: dict[str, _Model], candidate: Candidate) -> bool:
    low, high = _UNSURE
    return low < models[candidate.kind].probability(candidate.features) < high


@dataclass(frozen=True)
class _Model:
    """A logistic regression over named features, standardised by the training
    split's mean and scale: small enough to read, stored as plain numbers."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float

    def probability(self, values: dict[str, float]) -> float:
        # Each feature is clamped to 3 standard deviations: a page far outside the
        # training pages (a 5 MB one with 3,000 paragraphs) must not have one feature
        # outvote all the others.
        z = self.bias + sum(
            weight * max(-3.0, min(3.0, (values.get(name, 0.0) - mean) / scale))
            for name, mean, scale, weight in zip(
                self.features, self.mean, self.scale, self.weights, strict=True
            )
        )
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


@cache
def load_selector(path: Path = SELECTOR_PATH) -> dict[str, dict[str, _Model]]:
    """The fitted selector: for each mode, an "add" and a "keep" model."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {
        mode: {
            kind: _Model(
                features=tuple(spec["features"]),
                mean=tuple(float(x) for x in spec["mean"]),
                scale=tuple(float(x) for x in spec["scale"]),
                weights=tuple(float(x) for x in spec["weights"]),
                bias=float(spec["bias"]),
                threshold=float(spec["threshold"]),
            )
            for kind, spec in raw["modes"][mode].items()
        }
        for mode in MODES
    }


def _tidy(markdown: str) -> str:
    return _BLANK_LINES.sub("\n\n", markdown).strip()
