"""Ingest on Ray against the single-process ingest, on this machine, and what N GPU
workers would do.

    .venv/bin/python bench/ray_ingest.py [--pages 2000] [--documents 20000] [--small]
        [--corpus both|site|docs]

Two corpora, each ingested into a new LanceDB index three ways:

- ``site``: the generated site of bench/crawl_throughput.py (2,000 linked pages,
  3-8 paragraphs each) served by ``python -m http.server`` on 127.0.0.1 and
  crawled from its home page (``--crawl --scope host``);
- ``docs``: 20,000 generated Markdown files (one short note each) in a folder.

``single``: ``ragtune.ingest.ingest`` with the local engine. ``ray-1``, ``ray-2``:
the Ray engine on a Ray started here with 1 or 2 CPUs (so 1 or 2 embedding actors),
timed without Ray's start-up, which is shown on its own (a cluster outlives one
ingest). Target (issue #19): ray-1 at most 1.3x single; on 2 cores ray-2 is not
expected to gain.

Per-actor throughput: one embedding actor over a sample of the corpus' texts, its
model already loaded. The extrapolation assumes the work outside the embedding
actors (crawl or file listing, extraction, the driver's writes, Ray's scheduling)
stays as measured in ``ray-1`` and does not overlap with embedding (an upper
bound: the driver writes while the actors embed), that actors scale linearly (no
shared bottleneck before the store), and, for GPUs, the rate given by ``--gpu-rate``
(texts/s per GPU actor: an assumption, not measured here; MiniLM-L6 fp32 on one
data-centre GPU at batch 256 is commonly in the low thousands).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from crawl_throughput import generate_site, serve

from ragtune.index.embedding import make_embedder
from ragtune.index.vector_index import VectorStoreIndex
from ragtune.ingest import IngestResult, IngestSettings, ingest

WORDS = (
    "river valley orchard mill granary bridge ferry market guild ledger lantern "
    "quarry mason kiln pottery loom weaver dye harvest barley rye hops cellar cask"
).split()
WORKERS = (1, 2)
SAMPLE_TEXTS = 256


def generate_documents(folder: Path, count: int) -> None:
    rng = random.Random(7)
    folder.mkdir(parents=True)
    for n in range(count):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 90)))
        (folder / f"{n:05d}.md").write_text(f"# Note {n}\n\n{words.capitalize()}.\n")


def timed_ingest(
    sources: list[str], directory: Path, settings: IngestSettings
) -> tuple[IngestResult, float]:
    started = time.perf_counter()
    result = ingest(sources, directory, settings)
    return result, time.perf_counter() - started


def start_ray(cpus: int) -> float:
    import ray

    started = time.perf_counter()
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    ray.init(
        address="local",  # not a Ray that another program runs here (a test's cluster)
        num_cpus=cpus,
        include_dashboard=False,
        object_store_memory=256 * 1024 * 1024,
        log_to_driver=False,
    )
    return time.perf_counter() - started


def actor_rate(texts: list[str]) -> float:
    """Texts per second of one embedding actor (Ray running with one CPU): two runs of
    different sizes, so the actor's start and model load cancel out."""
    from ragtune.scale.ray_ingest import RayEngine

    engine = RayEngine.connect(None)
    embedder = make_embedder(None)
    seconds = []
    sizes = (len(texts) // 8, len(texts))
    for size in sizes:
        started = time.perf_counter()
        list(engine.embed_stream(texts[:size], embedder))
        seconds.append(time.perf_counter() - started)
    return (sizes[1] - sizes[0]) / max(seconds[1] - seconds[0], 1e-9)


def run_corpus(
    name: str, sources: list[str], settings: dict[str, Any], work: Path
) -> dict[str, Any]:
    import ray

    rows: dict[str, dict[str, float]] = {}
    single, seconds = timed_ingest(sources, work / "single", IngestSettings(**settings))
    rows["single"] = {"seconds": seconds, "startup": 0.0, "load": os.getloadavg()[0]}
    chunks = single.stats["chunks"]
    rate = 0.0
    for workers in WORKERS:
        startup = start_ray(workers)
        try:
            directory = work / f"ray-{workers}"
            result, seconds = timed_ingest(
                sources, directory, IngestSettings(engine="ray", **settings)
            )
            assert result.stats["chunks"] == chunks, "the Ray index differs from the local one"
            if workers == 1:
                index = VectorStoreIndex.load(directory)
                texts = [text for *_, text in index.store.chunk_texts()][:SAMPLE_TEXTS]
                rate = actor_rate(texts)
        finally:
            ray.shutdown()
        rows[f"ray-{workers}"] = {
            "seconds": seconds,
            "startup": startup,
            "load": os.getloadavg()[0],
        }
    return {"name": name, "chunks": chunks, "rows": rows, "actor_rate": rate}


def report(corpus: dict[str, Any], gpu_rate: float) -> None:
    rows, chunks, rate = corpus["rows"], corpus["chunks"], corpus["actor_rate"]
    single = rows["single"]["seconds"]
    print(f"\n## {corpus['name']}: {chunks} chunks")
    print(
        f"{'run':<8} {'seconds':>8} {'chunks/s':>9} {'x single':>9} {'Ray start-up s':>15} "
        f"{'load after':>10}"
    )
    for run, row in rows.items():
        seconds = row["seconds"]
        print(
            f"{run:<8} {seconds:8.1f} {chunks / seconds:9.1f} {seconds / single:9.2f} "
            f"{row['startup']:15.1f} {row['load']:10.1f}"
        )
    ratio = rows["ray-1"]["seconds"] / single
    print(f"ray-1 / single = {ratio:.2f}x (target <= 1.3x): {'met' if ratio <= 1.3 else 'MISSED'}")
    serial = max(0.0, rows["ray-1"]["seconds"] - chunks / rate)
    print(f"one CPU embedding actor: {rate:.1f} texts/s; outside the actors: {serial:.1f} s")
    print(
        f"{'workers':>7} {'CPU actors s':>13} {'GPU actors s':>13} (GPU at {gpu_rate:.0f} texts/s, assumed)"
    )
    for workers in (1, 2, 4, 8, 16, 32):
        cpu = serial + chunks / (workers * rate)
        gpu = serial + chunks / (workers * gpu_rate)
        print(f"{workers:7d} {cpu:13.1f} {gpu:13.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--documents", type=int, default=20000)
    parser.add_argument("--small", action="store_true", help="150 pages, 600 documents")
    parser.add_argument("--gpu-rate", type=float, default=2000.0)
    parser.add_argument("--corpus", choices=("both", "site", "docs"), default="both")
    args = parser.parse_args()
    pages, documents = (150, 600) if args.small else (args.pages, args.documents)
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="ragtune-bench-ray-") as scratch:
        work = Path(scratch)
        if args.corpus in ("both", "site"):
            generate_site(work / "site", pages)
            server, base = serve(work / "site")
            try:
                site = {"crawl": True, "scope": "host", "max_pages": pages, "max_depth": 10_000}
                site |= {"use_sitemaps": False}
                corpus = run_corpus(f"site, {pages} pages", [base + "/"], site, work / "s")
                report(corpus, args.gpu_rate)  # each corpus as it finishes: the run is long
            finally:
                server.terminate()
        if args.corpus in ("both", "docs"):
            generate_documents(work / "docs", documents)
            folder = [str(work / "docs")]
            corpus = run_corpus(f"docs, {documents} files", folder, {}, work / "d")
            report(corpus, args.gpu_rate)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
