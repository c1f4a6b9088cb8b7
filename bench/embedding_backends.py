"""Embedding backends on XQuAD (English): throughput and retrieval quality, one run.

Throughput: the 240 paragraphs embedded whole by each backend and thread count,
the configurations interleaved round by round (other work on the machine then
slows all of them alike), best round reported. Quality: an index per backend
(1 thread), recall@5 and MRR in dense and hybrid mode over the 1,190 questions,
and the cosine of each backend's paragraph vectors to PyTorch's.

.venv/bin/python bench/embedding_backends.py [--rounds 3] [--threads 1,2] [--skip-retrieval]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ragtune import VectorStoreIndex
from ragtune.eval.retrieval import evaluate_retrieval
from ragtune.eval.squad import context_documents, load_squad
from ragtune.index.embedding import BACKENDS, Embedder

QA = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qa-xquad-en" / "xquad.en.json"
)


def set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="thread counts to compare")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-retrieval", action="store_true")
    args = parser.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",")]

    questions = load_squad(QA)
    documents = context_documents(questions)
    texts = [document.text for document in documents]
    probe = Embedder()
    tokens = [probe.count_tokens(text) + 2 for text in texts]
    print(
        f"{len(texts)} XQuAD paragraphs, {np.mean(tokens):.0f} word pieces on average "
        f"(max {max(tokens)}, cut at {probe.max_tokens}); {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )

    # One embedder per (backend, threads); the ONNX export (cached) happens here, untimed.
    embedders: dict[tuple[str, int], Embedder] = {}
    for backend in BACKENDS:
        for threads in thread_counts:
            embedder = Embedder(batch_size=args.batch_size, backend=backend, threads=threads)
            set_torch_threads(threads)
            started = time.perf_counter()
            embedder.embed(texts[:4])  # load / export, warm up
            print(f"  {backend:<9} {threads} thr: ready in {time.perf_counter() - started:.1f} s")
            embedders[(backend, threads)] = embedder

    seconds: dict[tuple[str, int], list[float]] = {key: [] for key in embedders}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for (backend, threads), embedder in embedders.items():
            set_torch_threads(threads)
            started = time.perf_counter()
            result = embedder.embed(texts)
            seconds[(backend, threads)].append(time.perf_counter() - started)
            vectors.setdefault(backend, result)
    set_torch_threads(1)

    reference = vectors["torch"]
    base = len(texts) / min(seconds[("torch", 1)])
    print(
        f"\nthroughput (best of {args.rounds} rounds, median in brackets), "
        f"batch size {args.batch_size}"
    )
    print(f"{'backend':<10} {'threads':>7} {'chunks/s':>9} {'(median)':>9} {'vs torch 1t':>12}")
    for (backend, threads), times in seconds.items():
        best = len(texts) / min(times)
        median = len(texts) / float(np.median(times))
        print(f"{backend:<10} {threads:>7} {best:9.1f} {median:9.1f} {best / base:11.2f}x")
    print(f"\n{'backend':<10} {'min cos':>8} {'mean cos':>9}  (paragraph vectors vs torch)")
    for backend, matrix in vectors.items():
        cosines = (matrix * reference).sum(axis=1)
        print(f"{backend:<10} {cosines.min():8.4f} {cosines.mean():9.4f}")

    if args.skip_retrieval:
        return
    print(f"\nretrieval on {len(questions)} questions (1 thread)")
    print(
        f"{'backend':<10} {'ingest s':>8} | {'dense':>5} {'R@1':>6} {'R@5':>6} {'Δ pts':>6} "
        f"{'MRR':>6} | {'hybrid':>6} {'R@1':>6} {'R@5':>6} {'Δ pts':>6} {'MRR':>6} | "
        f"{'query p50 ms':>12}"
    )
    torch_recall: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for backend in BACKENDS:
            embedder = embedders[(backend, 1)]
            started = time.perf_counter()
            index = VectorStoreIndex.from_documents(
                documents, persist_dir=Path(scratch) / backend, embed_model=embedder
            )
            ingest_s = time.perf_counter() - started
            scores = {
                mode: evaluate_retrieval(index, questions, mode=mode)
                for mode in ("dense", "hybrid")
            }
            row = f"{backend:<10} {ingest_s:8.1f} |"
            for mode in ("dense", "hybrid"):
                recall = scores[mode].recall
                torch_recall.setdefault(mode, recall[5])
                delta = (recall[5] - torch_recall[mode]) * 100
                row += (
                    f" {'':>{len(mode)}} {recall[1]:6.3f} {recall[5]:6.3f} {delta:+6.1f} "
                    f"{scores[mode].mrr:6.3f} |"
                )
            print(f"{row} {scores['dense'].latency_p50_ms:12.1f}")


if __name__ == "__main__":
    main()
