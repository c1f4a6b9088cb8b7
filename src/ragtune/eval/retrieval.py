"""Retrieval quality: recall@k, MRR and latency.

A question counts as hit at k when one of the first k retrieved chunks
contains one of its gold answers (case-insensitive), as in the SQuAD-style
retrieval literature.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from ragtune.eval.squad import Question
from ragtune.index.ranking import RetrievalMode
from ragtune.index.vector_index import VectorStoreIndex

DEFAULT_KS = (1, 5, 10)


@dataclass
class RetrievalScores:
    questions: int
    recall: dict[int, float]
    mrr: float
    latency_p50_ms: float
    latency_p95_ms: float
    mode: str

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["recall"] = {f"@{k}": v for k, v in self.recall.items()}
        return data


def first_hit_rank(texts: Sequence[str], answers: Sequence[str]) -> int | None:
    """1-based rank of the first text containing any gold answer (case-insensitive)."""
    golds = [answer.lower() for answer in answers if answer.strip()]
    for rank, text in enumerate(texts, start=1):
        lowered = text.lower()
        if any(gold in lowered for gold in golds):
            return rank
    return None


def evaluate_retrieval(
    index: VectorStoreIndex,
    questions: Sequence[Question],
    ks: Sequence[int] = DEFAULT_KS,
    mode: RetrievalMode = "hybrid",
    progress: Callable[[int, int], None] | None = None,
) -> RetrievalScores:
    retriever = index.as_retriever(similarity_top_k=max(ks), mode=mode)
    ranks: list[int | None] = []
    latencies: list[float] = []
    for number, question in enumerate(questions, start=1):
        started = time.perf_counter()
        nodes = retriever.retrieve(question.question)
        latencies.append((time.perf_counter() - started) * 1000)
        ranks.append(first_hit_rank([node.text for node in nodes], question.answers))
        if progress:
            progress(number, len(questions))
    total = len(questions)
    recall = {k: sum(1 for r in ranks if r is not None and r <= k) / total for k in ks}
    mrr = sum(1 / r for r in ranks if r is not None) / total
    return RetrievalScores(
        questions=total,
        recall=recall,
        mrr=mrr,
        latency_p50_ms=statistics.median(latencies),
        latency_p95_ms=percentile(latencies, 95),
        mode=mode,
    )


def percentile(values: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(percent / 100 * len(ordered)) - 1))
    return ordered[index]
