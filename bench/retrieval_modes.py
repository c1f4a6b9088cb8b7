"""Hybrid against dense-only and keyword-only retrieval on XQuAD (English), same index.

.venv/bin/python bench/retrieval_modes.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ragtune import VectorStoreIndex
from ragtune.eval.retrieval import evaluate_retrieval
from ragtune.eval.squad import context_documents, load_squad

QA = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qa-xquad-en" / "xquad.en.json"
)


def main() -> None:
    questions = load_squad(QA)
    documents = context_documents(questions)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        index = VectorStoreIndex.from_documents(documents, persist_dir=Path(scratch) / "idx")
        ingest_s = time.perf_counter() - started
        print(
            f"{len(questions)} questions over {len(documents)} paragraphs "
            f"({index.stats()['chunks']} chunks, ingest {ingest_s:.1f} s)"
        )
        print(
            f"{'mode':<8} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR':>6} {'p50 ms':>7} {'p95 ms':>7}"
        )
        for mode in ("hybrid", "dense", "keyword"):
            s = evaluate_retrieval(index, questions, mode=mode)  # type: ignore[arg-type]
            print(
                f"{mode:<8} {s.recall[1]:6.3f} {s.recall[5]:6.3f} {s.recall[10]:6.3f} "
                f"{s.mrr:6.3f} {s.latency_p50_ms:7.1f} {s.latency_p95_ms:7.1f}"
            )


if __name__ == "__main__":
    main()
