"""Query latency at 100,000 chunks: the embedded LanceDB store and PostgreSQL + pgvector.

.venv/bin/python bench/store_latency.py [--chunks 100000] [--queries 200] [--lookups 20]
    [--stores lancedb,postgresql]

The 304 real chunks of XQuAD (English) are indexed with MiniLM, then padded
with synthetic chunks up to --chunks: each mixes three sentences of random real
chunks, and its vector is the normalised mean of theirs plus noise, so the
distractors are near the real ones in both words and meaning (embedding 100k
real passages would take hours on this CPU). Latency is the whole
``retriever.retrieve`` call, query embedding included, over real XQuAD
questions; recall@5 shows whether the answers survive the distractors.
A document lookup (what ``GET /v1/documents/{id}`` reads: one document's chunks
and metadata) is timed through the store's filter, against the former way of
reading every chunk's text and keeping that document's, on the same store.
PostgreSQL runs as a private server on 127.0.0.1 (tests/postgres_server.py).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.postgres_server import missing_reason, start_postgres  # noqa: E402

from ragtune import VectorStoreIndex  # noqa: E402
from ragtune.eval.retrieval import first_hit_rank  # noqa: E402
from ragtune.eval.squad import Question, context_documents, load_squad  # noqa: E402
from ragtune.index.stores import StoredChunk  # noqa: E402

QA = ROOT.parent / "shared" / "data" / "qa-xquad-en" / "xquad.en.json"
TARGET_P50_MS = 50.0
WRITE_BATCH = 10_000


def synthetic_chunks(real: list[StoredChunk], count: int, seed: int = 7) -> list[StoredChunk]:
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    sentences = [[s for s in chunk.text.split(". ") if s] or [chunk.text] for chunk in real]
    made = []
    for number in range(count):
        picks = [rng.randrange(len(real)) for _ in range(3)]
        text = ". ".join(rng.choice(sentences[p]) for p in picks) + "."
        vector = np.mean([real[p].vector for p in picks], axis=0)
        vector = vector + noise.normal(0, 0.02, vector.shape).astype(np.float32)
        vector = (vector / np.linalg.norm(vector)).astype(np.float32)
        doc = number // 4
        made.append(
            StoredChunk(
                id=f"syn{doc}:{number % 4}",
                doc_id=f"syn{doc}",
                url=f"https://site{doc % 50}.example/doc/{doc}",
                title=f"Synthetic {doc}",
                header=f"Synthetic {doc}",
                text=text,
                chunk_index=number % 4,
                metadata={"site": f"site{doc % 50}.example", "year": 2000 + doc % 25},
                vector=vector,
                embed_text=f"Synthetic {doc}\n\n{text}",
            )
        )
    return made


def real_chunks(index: VectorStoreIndex, questions: list[Question]) -> list[StoredChunk]:
    chunks = []
    for document in context_documents(questions):
        chunks.extend(index._chunks_of(document))
    vectors = index.store.cached_vectors({chunk.embed_hash for chunk in chunks})
    for chunk in chunks:
        chunk.vector = vectors[chunk.embed_hash]
    return chunks


def fill(index: VectorStoreIndex, chunks: list[StoredChunk]) -> float:
    started = time.perf_counter()
    for start in range(0, len(chunks), WRITE_BATCH):
        batch = chunks[start : start + WRITE_BATCH]
        index.store.replace_documents(sorted({c.doc_id for c in batch}), batch)
    index.manifest.metadata_keys = sorted({"site", "year", *index.manifest.metadata_keys})
    return time.perf_counter() - started


def measure(
    index: VectorStoreIndex, questions: list[Question], mode: str, filters: object = None
) -> tuple[float, float, float]:
    retriever = index.as_retriever(5, mode=mode, filters=filters)  # type: ignore[arg-type]
    retriever.retrieve(questions[0].question)  # warm caches
    latencies, hits = [], 0
    for question in questions:
        started = time.perf_counter()
        nodes = retriever.retrieve(question.question)
        latencies.append((time.perf_counter() - started) * 1000)
        rank = first_hit_rank([n.text for n in nodes], question.answers)
        hits += rank is not None
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
    return statistics.median(latencies), p95, hits / len(questions)


def lookups(index: VectorStoreIndex, doc_ids: list[str]) -> tuple[float, float]:
    """Median ms of one document's chunks read through the store's filter, and by
    reading every chunk and keeping the document's (as before)."""
    store = index.store
    filtered, scanned = [], []
    for doc_id in doc_ids:
        started = time.perf_counter()
        chunks = store.document_chunks(doc_id)
        filtered.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        before = sorted((n, t) for d, n, _url, t in store.chunk_texts() if d == doc_id)
        store.document_metadata()
        scanned.append((time.perf_counter() - started) * 1000)
        if [(n, t) for n, t, _metadata in chunks] != before:
            raise SystemExit(f"{doc_id}: the two reads differ")
    return statistics.median(filtered), statistics.median(scanned)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--lookups", type=int, default=20)
    parser.add_argument("--stores", default="lancedb,postgresql")
    args = parser.parse_args()
    questions = load_squad(QA)
    rng = random.Random(3)
    sample = rng.sample(questions, min(args.queries, len(questions)))

    with tempfile.TemporaryDirectory() as scratch:
        base = VectorStoreIndex.from_documents(
            context_documents(questions), persist_dir=Path(scratch) / "base"
        )
        real = real_chunks(base, questions)
        padding = synthetic_chunks(real, max(0, args.chunks - len(real)))
        # Written in batches of whole documents: a write replaces a document's chunks.
        everything = sorted(real + padding, key=lambda chunk: (chunk.doc_id, chunk.chunk_index))
        print(
            f"{len(everything)} chunks ({len(real)} real XQuAD, the rest synthetic), "
            f"{len(sample)} XQuAD questions, top-5"
        )
        started = time.perf_counter()
        for question in sample[:50]:
            base.embedder.embed_query(question.question)
        embed_ms = (time.perf_counter() - started) * 1000 / 50
        print(f"query embedding alone: {embed_ms:.1f} ms mean")
        print(f"{'store':<11} {'mode':<16} {'p50 ms':>7} {'p95 ms':>7} {'R@5':>6}")
        for store in args.stores.split(","):
            server = None
            if store == "postgresql":
                reason = missing_reason()
                if reason:
                    print(f"postgresql skipped: {reason}")
                    continue
                server = start_postgres(Path(tempfile.mkdtemp(prefix="ragtune-pg-bench-")))
                location = server.table_url("bench_chunks")
            else:
                location = "lancedb"
            try:
                index = VectorStoreIndex._create(
                    Path(scratch) / store, base.embedder, None, None, location
                )
                write_s = fill(index, everything)
                print(f"{store:<11} {'(write)':<16} {write_s:7.1f} s for {index.store.count()}")
                for mode, filters in [
                    ("hybrid", None),
                    ("dense", None),
                    ("keyword", None),
                    ("hybrid", {"year": [2000, 2001, 2002, 2003, 2004]}),
                ]:
                    p50, p95, recall = measure(index, sample, mode, filters)
                    label = mode + (" +filter" if filters else "")
                    # The filter keeps synthetic chunks only: its recall means nothing.
                    shown = "     -" if filters else f"{recall:6.3f}"
                    print(f"{store:<11} {label:<16} {p50:7.1f} {p95:7.1f} {shown}")
                    if store == "lancedb" and mode == "hybrid" and not filters:
                        verdict = "met" if p50 <= TARGET_P50_MS else "NOT met"
                        print(f"  target p50 <= {TARGET_P50_MS:.0f} ms (embedded store): {verdict}")
                doc_ids = sorted({chunk.doc_id for chunk in everything})
                picked = random.Random(5).sample(doc_ids, min(args.lookups, len(doc_ids)))
                one_ms, scan_ms = lookups(index, picked)
                print(
                    f"{store:<11} {'document lookup':<16} {one_ms:7.1f} ms by id, "
                    f"{scan_ms:.1f} ms reading every chunk ({scan_ms / one_ms:.0f}x), "
                    f"median of {len(picked)}"
                )
                index.close()
            finally:
                if server:
                    server.stop()


if __name__ == "__main__":
    main()
