"""pgvector at scale: load, HNSW build, size and top-10 latency/recall at 1M chunks.

.venv/bin/python bench/pgvector_scale.py [--rows 1000000] [--small] [--real 20000]
    [--queries 200] [--ef 40,64,100,200,400] [--maintenance-work-mem 3GB]
    [--parallel-workers 1] [--shared-buffers 4GB]

The table is the product's own: ``PostgresStore.ensure_table`` creates it with
its indexes, the secondary indexes' definitions are read back from
``pg_indexes`` and dropped, the rows go in with one binary COPY, and each index
is rebuilt from its own definition (the usual bulk-load order; the HNSW index
keeps pgvector's defaults m=16, ef_construction=64, as the store creates it).

Vectors. A real sample of chunks (XQuAD paragraphs, trafilatura's evaluation
pages, Alpaca and DPO records, Shakespeare, the PostgreSQL-docs index under
bench/results) is embedded once with the bundled MiniLM and cached under
bench/results/. The other rows are SMOTE-style points on that data: each takes
a real anchor ``a``, one of its 10 nearest real neighbours ``b``, a step
``t ~ U(0, 0.5)`` towards it and isotropic noise,
``normalise(a + t (b - a) + 0.7 e / sqrt(d))`` -- see ``synthesize``. HNSW's
cost and recall depend on the data's local geometry (intrinsic dimension, how
close each point's neighbours are), not on the text. Interpolating between real
neighbours keeps the points near the embedding manifold MiniLM produces; the
noise is set so that a point's nearest-neighbour cosine distance (median 0.22)
is what the real sample's (0.31 among its 13,859 chunks) becomes at 72 times the
density for an intrinsic dimension near 20 (0.31 * 72**(-1/20) = 0.25). With
little noise (0.05) every real chunk grew a tight cloud of ~70 near-duplicates
(nearest-neighbour distance 0.006) and recall@10 at 1M fell to 0.38 at
ef_search 40 -- a property of that data, not of real corpora. Each row's text is
its anchor's text, so the table, TOAST and GIN index have realistic sizes.

Queries are real questions (XQuAD, embedded with the query path), none of them
in the table. Exact top-10 comes from a brute-force scan in numpy over every
stored vector; ``--exact-sql`` of them are checked against PostgreSQL's own
sequential scan with index scans disabled. Latency is client wall time over
loopback (execute + fetch), after the index is pre-warmed into shared_buffers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.postgres_server import (  # noqa: E402
    PG_BIN,
    PostgresServer,
    missing_reason,
    start_postgres,
)

from ragtune.eval.squad import load_squad  # noqa: E402
from ragtune.index.stores.postgres import PostgresStore  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
PGDOCS_INDEX = RESULTS / "pgdocs-index" / "lancedb"
TABLE = "chunks"
DIMENSIONS = 384
TOP_K = 10
WINDOW_WORDS = 130
NEIGHBOURS = 10
MAX_STEP = 0.5
NOISE = 0.7
CHUNKS_PER_DOC = 8
# The product asks for similarity_top_k (4) * FUSION_DEPTH (4) dense candidates.
PRODUCT_LIMIT = 16


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


# --- the real sample -----------------------------------------------------------------


def windows(text: str, size: int = WINDOW_WORDS) -> Iterator[str]:
    words = text.split()
    for start in range(0, len(words), size):
        piece = " ".join(words[start : start + size])
        if len(piece) > 80:
            yield piece


def sample_texts() -> Iterator[tuple[str, str]]:
    """(source, text) pairs of real writing, as chunks of about 130 words."""
    squad = json.loads((DATA / "qa-xquad-en" / "xquad.en.json").read_text())
    for article in squad["data"]:
        for paragraph in article["paragraphs"]:
            for piece in windows(paragraph["context"]):
                yield "xquad", piece
    import trafilatura

    evaldata = json.loads((DATA / "extraction-eval" / "evaldata.json").read_text())
    for entry in evaldata.values():
        name = entry["file"]
        path = DATA / "extraction-eval" / "eval" / name
        if not path.exists():
            path = DATA / "extraction-eval" / "cache" / name
        if not path.exists():
            continue
        text = trafilatura.extract(path.read_bytes()) or ""
        for piece in windows(text):
            yield "web", piece
    for record in json.loads((DATA / "sft" / "alpaca_en_demo.json").read_text()):
        joined = " ".join((record["instruction"], record["input"], record["output"]))
        for piece in windows(joined):
            yield "alpaca", piece
    for record in json.loads((DATA / "preference" / "dpo_en_demo.json").read_text()):
        turns = [turn["value"] for turn in record["conversations"]]
        for piece in windows(" ".join([*turns, record["chosen"]["value"]])):
            yield "dpo", piece
    for piece in windows((DATA / "pretrain" / "tinyshakespeare.txt").read_text()):
        yield "shakespeare", piece


def pgdocs_chunks() -> tuple[list[str], np.ndarray]:
    """The PostgreSQL-docs index's chunks, already embedded with the same MiniLM."""
    if not PGDOCS_INDEX.exists():
        return [], np.zeros((0, DIMENSIONS), dtype=np.float32)
    import lancedb

    table = lancedb.connect(str(PGDOCS_INDEX)).open_table("chunks")
    frame = table.to_arrow().select(["text", "vector"]).to_pydict()
    vectors = np.asarray(frame["vector"], dtype=np.float32)
    return list(frame["text"]), vectors


def real_sample(limit: int, queries: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Real chunk texts and vectors, and query vectors; embedded once, then cached."""
    cache = RESULTS / f"pgvector-sample-{limit}-{queries}"
    texts_file, vectors_file = cache / "texts.json", cache / "vectors.npy"
    queries_file = cache / "queries.npy"
    if texts_file.exists() and vectors_file.exists() and queries_file.exists():
        vectors = np.load(vectors_file, allow_pickle=False)
        return json.loads(texts_file.read_text()), vectors, np.load(queries_file)
    from ragtune.index.embedding import make_embedder

    embedder = make_embedder(None)
    started = time.perf_counter()
    texts, vectors = pgdocs_chunks()
    texts = texts[:limit]
    vectors = vectors[:limit]
    fresh: list[str] = []
    for _, text in sample_texts():
        if len(texts) + len(fresh) >= limit:
            break
        fresh.append(text)
    if fresh:
        vectors = np.vstack([vectors, embedder.embed(fresh)])
        texts = texts + fresh
    query_vectors = np.vstack([embedder.embed_query(text) for text in question_texts(queries)])
    print(
        f"embedded {len(fresh)} chunks + {queries} questions in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    cache.mkdir(parents=True, exist_ok=True)
    texts_file.write_text(json.dumps(texts))
    np.save(vectors_file, vectors.astype(np.float32), allow_pickle=False)
    np.save(queries_file, query_vectors.astype(np.float32), allow_pickle=False)
    return texts, vectors.astype(np.float32), query_vectors.astype(np.float32)


def question_texts(count: int) -> list[str]:
    """The benchmark's questions: a fixed random sample of XQuAD's."""
    questions = load_squad(DATA / "qa-xquad-en" / "xquad.en.json")
    return [question.question for question in random.Random(11).sample(questions, count)]


# --- the synthetic rows ---------------------------------------------------------------


def nearest_real(vectors: np.ndarray, count: int) -> np.ndarray:
    """Each real vector's ``count`` nearest other real vectors (by cosine)."""
    found = np.empty((len(vectors), count), dtype=np.int64)
    for start in range(0, len(vectors), 2048):
        block = vectors[start : start + 2048] @ vectors.T
        block[np.arange(len(block)), np.arange(start, start + len(block))] = -2.0
        found[start : start + len(block)] = np.argpartition(-block, count, axis=1)[:, :count]
    return found


def synthesize(real: np.ndarray, rows: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` vectors: the real ones, then interpolations between real neighbours."""
    rng = np.random.default_rng(seed)
    anchors = np.concatenate([np.arange(min(rows, len(real))), rng.integers(0, len(real), rows)])
    anchors = anchors[:rows]
    vectors = np.empty((rows, real.shape[1]), dtype=np.float32)
    vectors[: min(rows, len(real))] = real[:rows]
    neighbours = nearest_real(real, NEIGHBOURS)
    for start in range(len(real), rows, 100_000):
        stop = min(rows, start + 100_000)
        a = anchors[start:stop]
        b = neighbours[a, rng.integers(0, NEIGHBOURS, len(a))]
        step = rng.uniform(0, MAX_STEP, (len(a), 1)).astype(np.float32)
        noise = rng.standard_normal((len(a), real.shape[1])).astype(np.float32)
        mixed = real[a] + step * (real[b] - real[a]) + NOISE / np.sqrt(real.shape[1]) * noise
        vectors[start:stop] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
    return vectors, anchors


# --- the server -----------------------------------------------------------------------


def pg_command(command: list[str]) -> None:
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    # No pipes: the restarted server would hold them open and the call never return.
    subprocess.run(
        command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300
    )


def configure(server: PostgresServer, settings: dict[str, str]) -> None:
    """Server settings through ALTER SYSTEM, then a restart (shared_buffers needs one)."""
    import psycopg

    with psycopg.connect(server.url, autocommit=True) as db:
        for name, value in settings.items():
            db.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    data, log = str(server.base / "data"), str(server.base / "server.log")
    pg_command([str(PG_BIN / "pg_ctl"), "-D", data, "-l", log, "-w", "-t", "120", "restart"])


# --- load and build -------------------------------------------------------------------


def copy_rows(db: Any, texts: list[str], vectors: np.ndarray, anchors: np.ndarray) -> None:
    from pgvector import Vector

    columns = "id, doc_id, url, title, header, text, search_text, embed_hash, chunk_index, "
    columns += "metadata, vector"
    types = ["text"] * 8 + ["integer", "jsonb", "vector"]
    with db.cursor().copy(f"COPY {TABLE} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for number, (vector, anchor) in enumerate(zip(vectors, anchors, strict=True)):
            doc = number // CHUNKS_PER_DOC
            url = f"https://site{doc % 500}.example/doc/{doc}"
            title = f"Document {doc}"
            header = f"Section {number % CHUNKS_PER_DOC}"
            text = texts[anchor]
            digest = hashlib.blake2b(f"{number}".encode(), digest_size=16).hexdigest()
            metadata = {"url": url, "title": title, "content_hash": digest, "date": "2026-01-01"}
            copy.write_row(
                (
                    f"{doc}:{number % CHUNKS_PER_DOC}",
                    f"{doc}",
                    url,
                    title,
                    header,
                    text,
                    f"{title}\n{header}\n{text}",
                    digest,
                    number % CHUNKS_PER_DOC,
                    json.dumps(metadata),
                    Vector(vector),
                )
            )


def load_table(
    store: PostgresStore, texts: list[str], vectors: np.ndarray, anchors: np.ndarray
) -> dict[str, Any]:
    store.ensure_table()
    db = store.connection
    definitions = db.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s "
        "AND indexname NOT LIKE %s ORDER BY indexname",
        (TABLE, "%_pkey"),
    ).fetchall()
    db.commit()
    with db.transaction():
        for name, _ in definitions:
            db.execute(f"DROP INDEX {name}")
    # pgvector tells the building client, as a NOTICE, if the graph outgrew
    # maintenance_work_mem (and the build slowed down).
    notices: list[str] = []
    db.add_notice_handler(lambda diagnostic: notices.append(str(diagnostic.message_primary)))
    load: dict[str, Any] = {"load_average_before": load_average(), "notices": notices}
    started = time.perf_counter()
    with db.transaction():
        copy_rows(db, texts, vectors, anchors)
    load["copy_s"] = round(time.perf_counter() - started, 1)
    load["load_average_after_copy"] = load_average()
    print(f"COPY {len(vectors)} rows: {load['copy_s']} s", flush=True)
    builds = {}
    for name, definition in sorted(definitions, key=lambda item: "hnsw" in item[1]):
        started = time.perf_counter()
        db.execute(definition)
        db.commit()
        builds[name] = {"definition": definition, "s": round(time.perf_counter() - started, 1)}
        print(f"{name}: {builds[name]['s']} s  load {load_average()}", flush=True)
    load["index_builds"] = builds
    load["load_average_after_builds"] = load_average()
    db.autocommit = True
    started = time.perf_counter()
    db.execute(f"VACUUM ANALYZE {TABLE}")
    db.autocommit = False
    load["vacuum_analyze_s"] = round(time.perf_counter() - started, 1)
    return load


def sizes(db: Any) -> dict[str, int]:
    row = db.execute(
        "SELECT pg_relation_size(%s), pg_table_size(%s), pg_indexes_size(%s), "
        "pg_total_relation_size(%s)",
        (TABLE,) * 4,
    ).fetchone()
    found = {"heap": row[0], "table_with_toast": row[1], "indexes": row[2], "total": row[3]}
    for name, size in db.execute(
        "SELECT indexname, pg_relation_size(indexname::regclass) FROM pg_indexes "
        "WHERE tablename = %s",
        (TABLE,),
    ).fetchall():
        found[f"index:{name}"] = size
    db.commit()
    return found


# --- queries --------------------------------------------------------------------------


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[list[int]]:
    scores = queries @ vectors.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    return [list(row[np.argsort(-scores[i, row])]) for i, row in enumerate(top)]


def row_number(chunk_id: str) -> int:
    doc, part = chunk_id.split(":")
    return int(doc) * CHUNKS_PER_DOC + int(part)


def hnsw_top(db: Any, query: np.ndarray, ef_search: int) -> tuple[list[int], float]:
    started = time.perf_counter()
    with db.transaction():
        db.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        db.execute(f"SET LOCAL hnsw.ef_search = {ef_search}")
        rows = db.execute(
            f"SELECT id, vector <=> %s AS distance FROM {TABLE} ORDER BY distance LIMIT %s",
            (query, TOP_K),
        ).fetchall()
    elapsed = time.perf_counter() - started
    return [row_number(row[0]) for row in rows], elapsed


def sql_exact_top(db: Any, query: np.ndarray) -> list[int]:
    with db.transaction():
        db.execute("SET LOCAL enable_indexscan = off")
        db.execute("SET LOCAL enable_bitmapscan = off")
        rows = db.execute(
            f"SELECT id FROM {TABLE} ORDER BY vector <=> %s LIMIT %s", (query, TOP_K)
        ).fetchall()
    return [row_number(row[0]) for row in rows]


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2), "p95_ms": round(p95 * 1000, 2)}


def measure_queries(
    store: PostgresStore,
    queries: np.ndarray,
    truth: list[list[int]],
    ef_values: list[int],
    sql_checks: int,
) -> dict[str, Any]:
    db = store.connection
    db.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
    prewarmed = {
        name: db.execute("SELECT pg_prewarm(%s)", (name,)).fetchone()[0]
        for name in (f"{TABLE}_vector", TABLE)
    }
    db.commit()
    checks = []
    for number in range(min(sql_checks, len(queries))):
        started = time.perf_counter()
        found = sql_exact_top(db, queries[number])
        checks.append((len(set(found) & set(truth[number])) / TOP_K, time.perf_counter() - started))
    results: dict[str, Any] = {
        "prewarmed_blocks": prewarmed,
        "sql_exact_checked": len(checks),
        "sql_exact_agreement": round(statistics.mean(c[0] for c in checks), 4) if checks else None,
        "sql_exact_p50_ms": round(statistics.median(c[1] for c in checks) * 1000, 1)
        if checks
        else None,
    }
    sweep = []
    for ef_search in ef_values:
        for query in queries[:20]:  # warm the code path and the buffers touched
            hnsw_top(db, query, ef_search)
        seconds, recalls = [], []
        for query, exact in zip(queries, truth, strict=True):
            found, elapsed = hnsw_top(db, query, ef_search)
            seconds.append(elapsed)
            recalls.append(len(set(found) & set(exact)) / TOP_K)
        sweep.append(
            {
                "ef_search": ef_search,
                **percentiles(seconds),
                "recall_at_10": round(statistics.mean(recalls), 4),
                "load_average": load_average(),
            }
        )
        print(f"ef_search {ef_search}: {sweep[-1]}", flush=True)
    results["sweep"] = sweep
    for query in queries[:20]:
        store.search_vector(query, PRODUCT_LIMIT)
    seconds, recalls = [], []
    for query, exact in zip(queries, truth, strict=True):
        started = time.perf_counter()
        hits = store.search_vector(query, PRODUCT_LIMIT)
        seconds.append(time.perf_counter() - started)
        found = [row_number(hit.row["id"]) for hit in hits[:TOP_K]]
        recalls.append(len(set(found) & set(exact)) / TOP_K)
    results["store_search_vector"] = {
        "limit": PRODUCT_LIMIT,
        "ef_search": max(40, min(1000, PRODUCT_LIMIT * 2)),
        **percentiles(seconds),
        "recall_at_10_of_first_10": round(statistics.mean(recalls), 4),
        "load_average": load_average(),
    }
    results["store_search_keyword"] = keyword_latency(store, question_texts(len(queries)))
    return results


def keyword_latency(store: PostgresStore, questions: list[str]) -> dict[str, Any]:
    """The other half of the default hybrid mode: ts_rank_cd over an OR of the words."""
    for question in questions[:5]:
        store.search_keyword(question, PRODUCT_LIMIT)
    seconds = []
    for question in questions:
        started = time.perf_counter()
        store.search_keyword(question, PRODUCT_LIMIT)
        seconds.append(time.perf_counter() - started)
    return {"limit": PRODUCT_LIMIT, **percentiles(seconds), "load_average": load_average()}


# --- the run --------------------------------------------------------------------------


def server_settings(args: argparse.Namespace) -> dict[str, str]:
    return {
        "shared_buffers": args.shared_buffers,
        "maintenance_work_mem": args.maintenance_work_mem,
        "max_parallel_maintenance_workers": str(args.parallel_workers),
        "max_parallel_workers": str(max(2, args.parallel_workers)),
        "effective_cache_size": "8GB",
        "max_wal_size": "8GB",
        "checkpoint_timeout": "30min",
        "synchronous_commit": "off",
        "wal_level": "minimal",
        "max_wal_senders": "0",
    }


def report(result: dict[str, Any]) -> None:
    mib = 1024 * 1024
    size = result["sizes"]
    print(f"\n{result['rows']:,} rows x {DIMENSIONS} dims  (pgvector {result['pgvector']})")
    print(f"COPY {result['load']['copy_s']} s; index builds:")
    for name, build in result["load"]["index_builds"].items():
        print(f"  {name:<22} {build['s']:>8.1f} s")
    print(
        f"heap {size['heap'] / mib:.0f} MiB, with TOAST {size['table_with_toast'] / mib:.0f} "
        f"MiB, indexes {size['indexes'] / mib:.0f} MiB (HNSW "
        f"{size[f'index:{TABLE}_vector'] / mib:.0f} MiB), total {size['total'] / mib:.0f} MiB"
    )
    queries = result["queries"]
    print(f"\n{'ef_search':>9} {'p50 ms':>8} {'p95 ms':>8} {'recall@10':>10}")
    for line in queries["sweep"]:
        print(
            f"{line['ef_search']:>9} {line['p50_ms']:>8.2f} {line['p95_ms']:>8.2f} "
            f"{line['recall_at_10']:>10.3f}"
        )
    store = queries["store_search_vector"]
    print(
        f"store.search_vector(limit={store['limit']}, ef_search={store['ef_search']}): "
        f"p50 {store['p50_ms']} ms, p95 {store['p95_ms']} ms, "
        f"recall@10 {store['recall_at_10_of_first_10']}"
    )
    keyword = queries["store_search_keyword"]
    print(
        f"store.search_keyword(limit={keyword['limit']}): p50 {keyword['p50_ms']} ms, "
        f"p95 {keyword['p95_ms']} ms"
    )
    print(
        f"SQL exact scan agrees with numpy on {queries['sql_exact_agreement']} of top-10 "
        f"({queries['sql_exact_checked']} queries, {queries['sql_exact_p50_ms']} ms each)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", action="store_true", help="50,000 rows: a quick check")
    parser.add_argument("--real", type=int, default=20_000, help="real chunks to embed")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", default="40,64,100,200,400")
    parser.add_argument("--exact-sql", type=int, default=20, help="queries checked by SQL scan")
    parser.add_argument("--maintenance-work-mem", default="3GB")
    parser.add_argument("--parallel-workers", type=int, default=1)
    parser.add_argument("--shared-buffers", default="4GB")
    args = parser.parse_args()
    rows = 50_000 if args.small else args.rows
    reason = missing_reason()
    if reason:
        sys.exit(f"error: {reason}")
    texts, real, queries = real_sample(args.real, args.queries)
    started = time.perf_counter()
    vectors, anchors = synthesize(real, rows)
    print(f"{rows} vectors ({len(real)} real) in {time.perf_counter() - started:.0f} s", flush=True)
    truth = exact_top(vectors, queries, TOP_K)
    result: dict[str, Any] = {
        "rows": rows,
        "real_chunks": len(real),
        "queries": None,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": server_settings(args),
        "synthesis": {"neighbours": NEIGHBOURS, "max_step": MAX_STEP, "noise": NOISE},
    }
    with tempfile.TemporaryDirectory(prefix="pgvector-scale-") as base:
        os.chmod(base, 0o755)  # the server runs as user postgres when we are root
        server = start_postgres(Path(base) / "pg")
        try:
            configure(server, result["settings"])
            store = PostgresStore(server.table_url(TABLE), TABLE, DIMENSIONS)
            result["pgvector"] = store.connection.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()[0]
            result["server_settings_in_effect"] = {
                name: store.connection.execute(f"SHOW {name}").fetchone()[0]
                for name in result["settings"]
            }
            store.connection.commit()
            result["load"] = load_table(store, texts, vectors, anchors)
            result["sizes"] = sizes(store.connection)
            ef_values = [int(value) for value in args.ef.split(",")]
            result["queries"] = measure_queries(store, queries, truth, ef_values, args.exact_sql)
            store.close()
        finally:
            server.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"pgvector-scale-{rows}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
