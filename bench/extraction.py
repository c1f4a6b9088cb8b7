"""Extraction quality on trafilatura's own evaluation set: ragtune against plain trafilatura.

    .venv/bin/python bench/extraction.py [--limit N]

Scoring follows ../shared/data/README.md: after whitespace normalisation each
"with" snippet found is a true positive (missing: false negative), each
"without" snippet found a false positive; counts pooled; F1 = 2TP/(2TP+FP+FN).
Both extractors run in this script, on the same pages, on this machine.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import trafilatura

from ragtune import extract_html
from ragtune.errors import ExtractionError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "extraction-eval"
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def baseline(html: bytes, url: str) -> str:
    return trafilatura.extract(html, url=url) or ""


def ragtune_markdown(html: bytes, url: str) -> str:
    try:
        return extract_html(html, url=url).markdown
    except ExtractionError:
        return ""


def ragtune_text(html: bytes, url: str) -> str:
    try:
        return extract_html(html, url=url).text
    except ExtractionError:
        return ""


def score(
    extractor: Callable[[bytes, str], str], cases: list[tuple[str, bytes, dict]]
) -> dict[str, float]:  # type: ignore[type-arg]
    tp = fp = fn = 0
    started = time.perf_counter()
    for url, html, expected in cases:
        output = normalise(extractor(html, url))
        for snippet in expected.get("with", []):
            if normalise(snippet) in output:
                tp += 1
            else:
                fn += 1
        fp += sum(1 for snippet in expected.get("without", []) if normalise(snippet) in output)
    seconds = time.perf_counter() - started
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "seconds": seconds}


def load_cases(limit: int | None) -> list[tuple[str, bytes, dict]]:  # type: ignore[type-arg]
    if not DATA.exists():
        sys.exit(f"extraction-eval data not found at {DATA}")
    evaldata = json.loads((DATA / "evaldata.json").read_text(encoding="utf-8"))
    cases = []
    for url, expected in evaldata.items():
        for folder in ("eval", "cache"):
            path = DATA / folder / expected["file"]
            if path.exists():
                cases.append((url, path.read_bytes(), expected))
                break
    return cases[:limit] if limit else cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N pages")
    args = parser.parse_args()
    cases = load_cases(args.limit)
    print(f"{len(cases)} pages from {DATA}")
    results = {
        "trafilatura.extract (baseline)": score(baseline, cases),
        "ragtune markdown": score(ragtune_markdown, cases),
        "ragtune text": score(ragtune_text, cases),
    }
    print(f"{'extractor':<32} {'precision':>9} {'recall':>7} {'F1':>6} {'pages/s':>8}")
    for name, r in results.items():
        print(
            f"{name:<32} {r['precision']:9.3f} {r['recall']:7.3f} {r['f1']:6.3f} {len(cases) / r['seconds']:8.1f}"
        )
    base = results["trafilatura.extract (baseline)"]["f1"]
    print(f"ragtune markdown F1 / baseline F1 = {results['ragtune markdown']['f1'] / base:.3f}")


if __name__ == "__main__":
    main()
