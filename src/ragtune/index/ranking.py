"""Ranking: a question in, the store's best chunks out.

The retriever needs a store to search, an embedder for the question, and the
metadata keys the indexed documents have (to refuse a filter on a key none
has); it knows nothing else of the index. It is where every search starts, so
it is where the question is checked (:func:`ragtune.questions.validate_query`)
and where filters are parsed (:func:`ragtune.index.filters.as_filters`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, Protocol

import numpy as np

from ragtune.documents import OUTLINKS, NodeWithScore, TextNode
from ragtune.errors import InvalidQueryError
from ragtune.index.calibration import ScoreCalibration
from ragtune.index.filters import FiltersArgument, MetadataFilters, as_filters
from ragtune.index.mmr import DEFAULT_MMR_LAMBDA, mmr_select
from ragtune.index.stores.base import ChunkStore, Row, SearchHit
from ragtune.index.vocabulary import CorpusVocabulary
from ragtune.questions import validate_query

RetrievalMode = Literal["hybrid", "dense", "keyword"]
RETRIEVAL_MODES: tuple[str, ...] = ("hybrid", "dense", "keyword")
# Standard RRF constant; each ranking is read this many times deeper than top-k.
RRF_K = 60
FUSION_DEPTH = 4


class QueryEmbedder(Protocol):
    """What ranking asks of an embedder: the question's unit-length vector."""

    def embed_query(self, text: str) -> np.ndarray: ...


class VectorIndexRetriever:
    """Ranks a store's chunks for a question.

    ``mode="hybrid"`` (the default) fuses BM25 keyword ranks with embedding
    ranks by reciprocal-rank fusion: keywords catch exact names and rare words
    a small embedder blurs, embeddings catch paraphrases. Scores are scaled so
    that first place in both rankings is 1.0. ``"dense"`` and ``"keyword"``
    use one ranking alone, with its own scores.

    ``filters`` restrict the search to matching chunks before ranking (see
    ``ragtune.index.filters``); a filter on a key outside ``metadata_keys``
    (and the built-in ``url``, ``title``, ``site``) is refused as a typo.
    ``mmr=True`` re-ranks the candidates by maximal marginal relevance, trading
    some relevance (``mmr_lambda`` 1.0 keeps it all) for passages that say
    different things.
    """

    def __init__(
        self,
        store: ChunkStore,
        embedder: QueryEmbedder,
        similarity_top_k: int = 4,
        mode: RetrievalMode = "hybrid",
        filters: FiltersArgument = None,
        mmr: bool = False,
        mmr_lambda: float = DEFAULT_MMR_LAMBDA,
        *,
        metadata_keys: Iterable[str],
        calibration: ScoreCalibration | None = None,
        vocabulary: CorpusVocabulary | None = None,
    ) -> None:
        if similarity_top_k < 1:
            raise InvalidQueryError("top-k must be at least 1")
        if mode not in RETRIEVAL_MODES:
            raise InvalidQueryError(
                f"unknown retrieval mode {mode!r}; use one of {RETRIEVAL_MODES}"
            )
        if not 0.0 <= mmr_lambda <= 1.0:
            raise InvalidQueryError(f"mmr_lambda must be between 0 and 1, not {mmr_lambda}")
        self.store = store
        self.embedder = embedder
        self.similarity_top_k = similarity_top_k
        self.mode = mode
        self.filters: MetadataFilters = as_filters(filters)
        self.filters.check_keys(metadata_keys)
        self.mmr = mmr
        self.mmr_lambda = mmr_lambda
        # What this corpus's cosines mean: the query engine reads it to decide
        # whether the sources hold an answer (None for an uncalibrated index).
        self.calibration = calibration
        # Which words the corpus holds: a question naming one it lacks is not in it.
        self.vocabulary = vocabulary

    def retrieve(self, query: str) -> list[NodeWithScore]:
        """The best chunks for ``query``; InvalidQueryError when it is empty or too long."""
        query = validate_query(query)
        k = self.similarity_top_k
        # MMR chooses among more candidates than it returns.
        wanted = k * FUSION_DEPTH if self.mmr else k
        filters = self.filters or None
        query_vector = self.embedder.embed_query(query)
        if self.mode == "keyword":
            hits = self.store.search_keyword(query, wanted, filters)
            nodes = [_scored(hit.row, hit.score) for hit in hits]
            similarity = {hit.row["id"]: _cosine(query_vector, hit.row) for hit in hits}
        else:
            dense = self.store.search_vector(query_vector, wanted * FUSION_DEPTH, filters)
            similarity = {hit.row["id"]: hit.score for hit in dense}
            if self.mode == "dense":
                nodes = [_scored(hit.row, hit.score) for hit in dense[:wanted]]
            else:
                keyword = self.store.search_keyword(query, wanted * FUSION_DEPTH, filters)
                for hit in keyword:
                    similarity.setdefault(hit.row["id"], _cosine(query_vector, hit.row))
                nodes = reciprocal_rank_fusion({"dense": dense, "keyword": keyword}, wanted)
        if self.mmr:
            nodes = mmr_select(nodes, query_vector, k, self.mmr_lambda)
        # Every node says how close it is to the question on one scale, whichever
        # ranking found it: the query engine cuts weak sources on this.
        for node in nodes:
            node.metadata["similarity"] = similarity[node.node_id]
        return nodes


def reciprocal_rank_fusion(rankings: dict[str, list[SearchHit]], limit: int) -> list[NodeWithScore]:
    """Fuse named rankings; each node keeps its score in each ranking that found it."""
    fused: dict[str, float] = {}
    rows: dict[str, Row] = {}
    scores: dict[str, dict[str, float]] = {}
    for name, ranking in rankings.items():
        for rank, hit in enumerate(ranking, start=1):
            key = hit.row["id"]
            fused[key] = fused.get(key, 0.0) + 1.0 / (RRF_K + rank)
            rows.setdefault(key, hit.row)
            scores.setdefault(key, {})[name] = hit.score
    best_possible = len(rankings) / (RRF_K + 1)
    order = sorted(fused, key=fused.__getitem__, reverse=True)[:limit]
    nodes = []
    for key in order:
        node = _scored(rows[key], fused[key] / best_possible)
        node.metadata["retrieval_scores"] = scores[key]
        nodes.append(node)
    return nodes


def _scored(row: Row, score: float) -> NodeWithScore:
    return NodeWithScore(node=_node(row), score=score)


def _node(row: Row) -> TextNode:
    metadata: dict[str, Any] = {
        key: value for key, value in row["metadata"].items() if key != OUTLINKS
    }
    metadata.setdefault("url", row["url"])
    metadata.setdefault("title", row["title"])
    metadata["header"] = row["header"]
    node = TextNode(text=row["text"], metadata=metadata, id_=row["id"], ref_doc_id=row["doc_id"])
    node.embedding = row["vector"]
    return node


def _cosine(query_vector: np.ndarray, row: Row) -> float:
    # Vectors are unit length, so the dot product is the cosine similarity.
    return float(np.dot(query_vector, row["vector"]))
