"""Abstention on XQuAD (English): does the engine say "not in the sources" when, and only when,
the index cannot answer?

Half of the 48 articles are indexed (``split_by_article``, seed 0); every question is asked
of that index. The held-out half's questions are honestly unanswerable (their article is
not in the index), the kept half's are answerable. The decision is made before any LLM
is asked, so none is loaded. For each embedding backend: the share of unanswerable
questions abstained on (want >= 0.80), the share of answerable ones wrongly abstained on
(want <= 0.05), for the calibrated rule, for it without the absent-names evidence, and for
the fixed 0.22 cosine that came before; the
ingest time and the part of it the calibration took; and, over all backends, how many
questions got the same decision from each.

.venv/bin/python bench/abstention.py [--backends onnx-int8,onnx,torch] [--held-out 24]
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

from ragtune import VectorStoreIndex
from ragtune.eval.squad import Question, context_documents, load_squad, split_by_article
from ragtune.index.calibration import UNRELATED_QUESTIONS, calibrate
from ragtune.index.embedding import make_embedder
from ragtune.query.abstention import DEFAULT_MIN_SIMILARITY, Thresholds, decide
from ragtune.query.engine import RetrieverQueryEngine

QA = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qa-xquad-en" / "xquad.en.json"
)

RULES = ("calibrated", "calibrated, no names", "fixed 0.22")


def decisions(
    backend: str, kept: list[Question], asked: list[Question], scratch: Path
) -> tuple[dict[str, tuple[bool, ...]], dict[str, float]]:
    """Per question id: abstained by (the calibrated rule, the calibrated rule without
    absent names, the fixed rule)."""
    embedder = make_embedder(None, backend)
    started = time.perf_counter()
    index = VectorStoreIndex.from_documents(
        context_documents(kept), persist_dir=scratch / backend, embed_model=embedder
    )
    ingest_s = time.perf_counter() - started
    # What the ingest spent on calibration, measured alone: embedding the probes (once
    # per process and embedder) and, at every write, searching the index with them.
    started = time.perf_counter()
    index.embedder.embed(list(UNRELATED_QUESTIONS))
    calibrate_s = time.perf_counter() - started
    started = time.perf_counter()
    calibrate(index.store, index.embedder)  # the probes' vectors are cached by now
    calibrate_s += time.perf_counter() - started
    calibration = index.calibration
    assert calibration is not None, "the ingest wrote no calibration"
    thresholds = Thresholds.of(calibration)
    engine = RetrieverQueryEngine(index.as_retriever())
    result: dict[str, tuple[bool, ...]] = {}
    for question in asked:
        # The engine's own retrieval and decision (no LLM is loaded for it).
        _, metadata = engine._retrieve(question.question)
        calibrated = bool(metadata.get("not_in_sources"))
        best = metadata["best_similarity"]
        evidence = metadata["keyword_evidence"]
        no_names = best is None or not decide(best, evidence, calibration).in_sources
        fixed = best is None or not decide(best, evidence, None, DEFAULT_MIN_SIMILARITY).in_sources
        result[question.id] = (calibrated, no_names, fixed)
    info = {
        "ingest_s": ingest_s,
        "calibrate_s": calibrate_s,
        "background": calibration.background,
        "spread": calibration.spread,
        "related": thresholds.related,
        "similar": thresholds.similar,
    }
    return result, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="onnx-int8,onnx,torch")
    parser.add_argument("--held-out", type=int, default=24, help="articles left out of the index")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    if importlib.util.find_spec("onnxruntime") is None:
        backends = [b for b in backends if not b.startswith("onnx")]
    questions = load_squad(QA)
    kept, held = split_by_article(questions, args.held_out)
    asked = kept + held
    print(
        f"{len(kept)} answerable questions ({len({q.title for q in kept})} articles indexed), "
        f"{len(held)} unanswerable ({len({q.title for q in held})} articles held out)"
    )
    print(
        f"{'backend':<10} {'rule':<20} {'abstain':>8} {'false':>7}   "
        f"{'ingest s':>8} {'calib s':>7}  thresholds (related / similar)"
    )
    by_backend: dict[str, dict[str, tuple[bool, ...]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for backend in backends:
            result, info = decisions(backend, kept, asked, Path(scratch))
            by_backend[backend] = result
            for position, rule in enumerate(RULES):
                unanswered = [result[q.id][position] for q in held]
                wrongly = [result[q.id][position] for q in kept]
                timing = (
                    f"{info['ingest_s']:8.1f} {info['calibrate_s']:7.2f}  "
                    f"{info['related']:.3f} / {info['similar']:.3f} "
                    f"(background {info['background']:.3f}, spread {info['spread']:.3f})"
                    if position == 0
                    else ""
                )
                print(
                    f"{backend:<10} {rule:<20} {sum(unanswered) / len(unanswered):8.3f} "
                    f"{sum(wrongly) / len(wrongly):7.3f}   {timing}"
                )
    if len(by_backend) > 1:
        for position, rule in enumerate(RULES):
            same = sum(len({by_backend[b][q.id][position] for b in by_backend}) == 1 for q in asked)
            print(
                f"{rule}: {same} of {len(asked)} questions decided alike by "
                f"{', '.join(by_backend)} ({same / len(asked):.3f})"
            )


if __name__ == "__main__":
    main()
