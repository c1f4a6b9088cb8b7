"""Extraction quality on trafilatura's own evaluation set: ragtune, its ensemble and single extractors.

    .venv/bin/python bench/extraction.py [--limit N] [--only NAME ...]
    .venv/bin/python bench/extraction.py --fit     # refit src/ragtune/extract/ensemble_selector.json

Every extractor runs in this one process on the same pages, so pages/s compare
(the ratio column is against trafilatura.extract's default in the same run).
F1 is reported on all pages, on the development split and on the held-out split:
a page is held out when the SHA-256 of its URL, taken modulo 10, is below 3
(about 30%). The ensemble's selector is fitted on the development split only,
so its held-out F1 is the honest one.

Scoring follows ../shared/data/README.md: after whitespace normalisation each
"with" snippet found is a true positive (missing: false negative), each
"without" snippet found a false positive; counts pooled; F1 = 2TP/(2TP+FP+FN).
Both extractors run in this script, on the same pages, on this machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import trafilatura

from ragtune import extract_html
from ragtune.errors import ExtractionError
from ragtune.extract import ensemble, extractors

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


def trafilatura_precision(html: bytes, url: str) -> str:
    return trafilatura.extract(html, url=url, favor_precision=True, include_tables=True) or ""


def trafilatura_recall(html: bytes, url: str) -> str:
    return trafilatura.extract(html, url=url, favor_recall=True, include_tables=True) or ""


def resiliparse(html: bytes, url: str) -> str:
    return "\n".join(extractors.resiliparse_lines(extractors.as_text(html)))


def readability(html: bytes, url: str) -> str:
    from lxml import html as lxml_html
    from readability import Document

    try:
        summary = Document(html).summary(html_partial=True)
        return lxml_html.fromstring(summary).text_content() if summary.strip() else ""
    except Exception:
        return ""


def ensemble_mode(mode: ensemble.Mode) -> Callable[[bytes, str], str]:
    def run(html: bytes, url: str) -> str:
        try:
            return ensemble.extract_combined(html, url=url, extractor=mode).markdown
        except ExtractionError:
            return ""

    return run


BASELINE = "trafilatura.extract (baseline)"
EXTRACTORS: dict[str, Callable[[bytes, str], str]] = {
    BASELINE: baseline,
    "trafilatura favor_precision": trafilatura_precision,
    "trafilatura favor_recall": trafilatura_recall,
    "resiliparse main content": resiliparse,
    "readability-lxml": readability,
    "ragtune markdown": ragtune_markdown,
    "ragtune text": ragtune_text,
    "ragtune ensemble fast": ensemble_mode("fast"),
    "ragtune ensemble best": ensemble_mode("best"),
}


def held_out(url: str) -> bool:
    return int(hashlib.sha256(url.encode("utf-8")).hexdigest(), 16) % 10 < 3


def score(
    chosen: dict[str, Callable[[bytes, str], str]], cases: list[tuple[str, bytes, dict]]
) -> dict[str, dict[str, float]]:  # type: ignore[type-arg]
    """Every extractor on every page, page by page in turn, so that the load of a
    shared machine falls on all of them alike and their pages/s compare."""
    counts = {name: {split: [0, 0, 0] for split in ("all", "dev", "held")} for name in chosen}
    seconds = dict.fromkeys(chosen, 0.0)
    for url, html, expected in cases:
        for name, extractor in chosen.items():
            started = time.perf_counter()
            output = extractor(html, url)
            seconds[name] += time.perf_counter() - started
            output = normalise(output)
            tp = sum(1 for snippet in expected.get("with", []) if normalise(snippet) in output)
            fn = len(expected.get("with", [])) - tp
            fp = sum(1 for snippet in expected.get("without", []) if normalise(snippet) in output)
            for split in ("all", "held" if held_out(url) else "dev"):
                for slot, value in enumerate((tp, fp, fn)):
                    counts[name][split][slot] += value
    results = {}
    for name, by_split in counts.items():
        tp, fp, fn = by_split["all"]
        result = {
            "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0,
            "seconds": seconds[name],
        }
        for split, (tp, fp, fn) in by_split.items():
            result[f"f1_{split}"] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        results[name] = result
    return results


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


def label(text: str, expected: dict) -> int | None:  # type: ignore[type-arg]
    """1 for a block that holds (or is part of) a wanted snippet, 0 for one that holds
    an unwanted one, None where the annotation says nothing about it."""
    key = extractors.comparison_key(text)
    for wanted, snippets in ((1, expected.get("with", [])), (0, expected.get("without", []))):
        for snippet in snippets:
            snippet_key = extractors.comparison_key(snippet)
            if snippet_key and (snippet_key in key or (len(key) >= 20 and key in snippet_key)):
                return wanted
    return None


def fit_logistic(rows: list[dict[str, float]], labels: list[int], names: list[str]) -> dict:  # type: ignore[type-arg]
    """Plain batch gradient descent with a small L2 penalty on standardised features:
    a few thousand rows and a dozen features need nothing more."""
    x = np.array([[row.get(name, 0.0) for name in names] for row in rows])
    y = np.array(labels, dtype=float)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    weights, bias = np.zeros(len(names)), 0.0
    for _ in range(4000):
        p = 1 / (1 + np.exp(-(z @ weights + bias)))
        weights -= 0.5 * (z.T @ (p - y) / len(y) + 1e-2 * weights)
        bias -= 0.5 * float(np.mean(p - y))
    return {
        "features": names,
        "mean": [round(float(v), 6) for v in mean],
        "scale": [round(float(v), 6) for v in scale],
        "weights": [round(float(v), 6) for v in weights],
        "bias": round(bias, 6),
        "threshold": 0.5,
    }


def fit(cases: list[tuple[str, bytes, dict]]) -> None:  # type: ignore[type-arg]
    """Fit the selector on the development split only and write it as plain JSON."""
    rows: dict[str, list[tuple[dict[str, float], int]]] = {"add": [], "keep": []}
    dev = [case for case in cases if not held_out(case[0])]
    for url, html, expected in dev:
        try:
            found = ensemble.candidates(html, url=url)
        except ExtractionError:
            continue
        for candidate in found:
            wanted = label(candidate.text, expected)
            if wanted is not None:
                rows[candidate.kind].append((candidate.features, wanted))
    voters = {f"in_{ensemble.TRAFILATURA_PRECISION}", f"in_{ensemble.READABILITY}"}
    modes = {}
    for mode in ensemble.MODES:
        models = {}
        for kind, labelled in rows.items():
            names = sorted({name for features, _ in labelled for name in features})
            if mode == "fast":
                names = [name for name in names if name not in voters]
            models[kind] = fit_logistic([f for f, _ in labelled], [y for _, y in labelled], names)
            print(
                f"{mode} {kind}: {len(labelled)} labelled blocks, {sum(y for _, y in labelled)} wanted"
            )
        modes[mode] = models
    selector = {
        "about": "ragtune/extract/ensemble.py selector, fitted by bench/extraction.py --fit "
        f"on the {len(dev)} development pages of extraction-eval (URL SHA-256 mod 10 >= 3)",
        "modes": modes,
    }
    ensemble.SELECTOR_PATH.write_text(json.dumps(selector, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {ensemble.SELECTOR_PATH}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N pages")
    parser.add_argument(
        "--only", nargs="*", default=None, help="extractors whose name holds one of these words"
    )
    parser.add_argument(
        "--fit", action="store_true", help="refit the ensemble's selector on the dev split"
    )
    args = parser.parse_args()
    cases = load_cases(args.limit)
    held = sum(1 for url, _, _ in cases if held_out(url))
    print(f"{len(cases)} pages from {DATA} ({held} held out)")
    if args.fit:
        fit(cases)
        return
    chosen = {
        name: run
        for name, run in EXTRACTORS.items()
        if name == BASELINE or not args.only or any(word in name for word in args.only)
    }
    print(
        f"{'extractor':<30} {'prec':>5} {'recall':>6} {'F1':>6} {'F1 dev':>6} {'F1 held':>7} {'pages/s':>7} {'x traf':>6}"
    )
    results = score(chosen, cases)
    base_speed = len(cases) / results[BASELINE]["seconds"]
    for name, r in results.items():
        speed = len(cases) / r["seconds"]
        print(
            f"{name:<30} {r['precision']:5.3f} {r['recall']:6.3f} {r['f1_all']:6.3f} {r['f1_dev']:6.3f} {r['f1_held']:7.3f} {speed:7.1f} {speed / base_speed:6.2f}"
        )


if __name__ == "__main__":
    main()
