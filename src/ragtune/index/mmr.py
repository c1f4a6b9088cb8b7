"""Maximal marginal relevance: relevant passages that do not repeat each other."""

from __future__ import annotations

import numpy as np

from ragtune.documents import NodeWithScore

DEFAULT_MMR_LAMBDA = 0.5


def mmr_select(
    candidates: list[NodeWithScore], query_vector: np.ndarray, limit: int, lam: float
) -> list[NodeWithScore]:
    """Greedily pick ``limit`` candidates, each maximising
    ``lam * relevance - (1 - lam) * (similarity to the closest one already picked)``.

    Relevance is the candidate's similarity to the question (its stored vector
    against the query vector), so the two terms share one scale whatever
    ranking produced the candidates. The candidates' order breaks ties.
    """
    if not candidates or limit < 1:
        return []
    vectors = np.stack([np.asarray(node.node.embedding, dtype=np.float32) for node in candidates])
    relevance = vectors @ query_vector
    pairwise = vectors @ vectors.T
    chosen: list[int] = []
    closest = np.full(len(candidates), -np.inf, dtype=np.float32)
    remaining = list(range(len(candidates)))
    while remaining and len(chosen) < limit:
        if chosen:
            scores = [lam * relevance[i] - (1 - lam) * closest[i] for i in remaining]
        else:
            scores = [relevance[i] for i in remaining]
        best = remaining[int(np.argmax(scores))]
        chosen.append(best)
        remaining.remove(best)
        closest = np.maximum(closest, pairwise[best])
    return [candidates[i] for i in chosen]
