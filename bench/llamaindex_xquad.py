"""ragtune against LlamaIndex's defaults on XQuAD (English): retrieval recall and ingest time.

    .venv/bin/python bench/llamaindex_xquad.py [--runs 1]

Both sides index the same 240 XQuAD paragraphs (one document per paragraph,
metadata ``url`` and ``title``), embed with the same local all-MiniLM-L6-v2
directory, use the same number of torch threads (ragtune's setting,
RAGTUNE_TORCH_THREADS, default 1), persist their index to disk, and answer
the same 1,190 questions with the same top-k. A question is a hit at k when
one of the first k retrieved chunks contains a gold answer (case-insensitive),
the definition ``ragtune eval retrieval`` uses.

- ragtune: ``VectorStoreIndex.from_documents(documents, persist_dir=...)`` and
  ``index.as_retriever(similarity_top_k=k)``: its defaults, hybrid retrieval.
- LlamaIndex (``.venv-bench``, made by ``make bench``; never ragtune's own
  environment), in a subprocess: ``VectorStoreIndex.from_documents`` with its
  default ``SentenceSplitter`` and in-memory ``SimpleVectorStore``, then
  ``storage_context.persist(dir)``; ``HuggingFaceEmbedding`` on the MiniLM
  directory with its defaults; ``Settings.llm = None`` (nothing reaches a
  hosted model); ``index.as_retriever(similarity_top_k=k)``.

Ingest time runs from Document objects in memory to an index persisted on
disk and includes loading the embedding model; imports (torch,
sentence-transformers, the libraries themselves) are done before the clock
starts on both sides. R@1, R@5 and query p50 come from top-5 retrieval; R@10
and MRR from top-10 retrieval.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune import VectorStoreIndex
from ragtune.assets import DEFAULT_EMBEDDER
from ragtune.eval.retrieval import first_hit_rank
from ragtune.eval.squad import Question, context_documents, load_squad
from ragtune.runtime import torch_threads

ROOT = Path(__file__).resolve().parents[1]
QA = ROOT.parent / "shared" / "data" / "qa-xquad-en" / "xquad.en.json"
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
TOP_KS = (5, 10)
RECALL_TARGET = 0.10  # ragtune's recall@5 at least 10 points higher
INGEST_TARGET = 0.5  # ragtune's ingest at most half LlamaIndex's time

# Runs in .venv-bench. Reads a request JSON, writes a result JSON.
WORKER = r"""
import json, sys, time
from pathlib import Path

request = json.loads(Path(sys.argv[1]).read_text())

import torch
torch.set_num_threads(request["threads"])

from importlib.metadata import version
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.schema import MetadataMode
from llama_index.embeddings.huggingface import HuggingFaceEmbedding

Settings.llm = None  # MockLLM: nothing may try to reach OpenAI
documents = [
    Document(text=d["text"], metadata=d["metadata"], id_=d["id"]) for d in request["documents"]
]

started = time.perf_counter()
embed_model = HuggingFaceEmbedding(model_name=request["model_path"])  # its defaults
loaded = time.perf_counter()
Settings.embed_model = embed_model
index = VectorStoreIndex.from_documents(documents)  # default splitter, in-memory store
index.storage_context.persist(persist_dir=request["persist_dir"])
ingest_s = time.perf_counter() - started

nodes = list(index.docstore.docs.values())
tokenizer = embed_model._model.tokenizer
limit = embed_model.max_length
truncated = sum(
    1 for node in nodes
    if len(tokenizer(node.get_content(metadata_mode=MetadataMode.EMBED))["input_ids"]) > limit
)
splitter = Settings.node_parser
runs = {}
for k in request["top_ks"]:
    retriever = index.as_retriever(similarity_top_k=k)
    texts, latencies = [], []
    for question in request["questions"]:
        t0 = time.perf_counter()
        found = retriever.retrieve(question)
        latencies.append((time.perf_counter() - t0) * 1000)
        texts.append([n.node.get_content(metadata_mode=MetadataMode.NONE) for n in found])
    runs[str(k)] = {"texts": texts, "latencies_ms": latencies}

Path(sys.argv[2]).write_text(json.dumps({
    "ingest_s": ingest_s,
    "model_load_s": loaded - started,
    "chunks": len(nodes),
    "truncated_chunks": truncated,
    "embed_max_tokens": limit,
    "embed_batch_size": embed_model.embed_batch_size,
    "splitter": f"{type(splitter).__name__}(chunk_size={splitter.chunk_size}, "
                f"chunk_overlap={splitter.chunk_overlap})",
    "vector_store": type(index.vector_store).__name__,
    "torch_threads": torch.get_num_threads(),
    "versions": {p: version(p) for p in (
        "llama-index-core", "llama-index-embeddings-huggingface", "sentence-transformers",
        "transformers", "torch")},
    "runs": runs,
}))
"""


@dataclass
class SideResult:
    name: str
    ingest_s: float
    chunks: int
    ranks: dict[int, list[int | None]]  # top-k -> first-hit rank per question
    p50_ms: float
    disk_bytes: int
    extra: dict[str, Any]

    def recall(self, at: int, top_k: int) -> float:
        ranks = self.ranks[top_k]
        return sum(1 for r in ranks if r is not None and r <= at) / len(ranks)

    def mrr(self, top_k: int) -> float:
        ranks = self.ranks[top_k]
        return sum(1 / r for r in ranks if r is not None) / len(ranks)


def disk_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def run_ragtune(questions: list[Question], work: Path) -> SideResult:
    # Imported before the clock starts, as the LlamaIndex worker imports them before its clock.
    import sentence_transformers  # noqa: F401
    import torch  # noqa: F401

    documents = context_documents(questions)
    persist_dir = work / "ragtune-index"
    started = time.perf_counter()
    index = VectorStoreIndex.from_documents(documents, persist_dir=persist_dir)
    ingest_s = time.perf_counter() - started
    ranks: dict[int, list[int | None]] = {}
    latencies: dict[int, list[float]] = {}
    for k in TOP_KS:
        retriever = index.as_retriever(similarity_top_k=k)
        ranks[k], latencies[k] = [], []
        for question in questions:
            t0 = time.perf_counter()
            nodes = retriever.retrieve(question.question)
            latencies[k].append((time.perf_counter() - t0) * 1000)
            ranks[k].append(first_hit_rank([node.text for node in nodes], question.answers))
    return SideResult(
        name="ragtune",
        ingest_s=ingest_s,
        chunks=int(index.stats()["chunks"]),
        ranks=ranks,
        p50_ms=statistics.median(latencies[TOP_KS[0]]),
        disk_bytes=disk_bytes(persist_dir),
        extra={"embedded": index.last_insert.embedded, "chunk_size": index.manifest.chunk_size},
    )


def run_llamaindex(questions: list[Question], work: Path, threads: int) -> SideResult:
    if not BENCH_PYTHON.exists():
        sys.exit("LlamaIndex is not installed: run `make bench`, which makes .venv-bench")
    documents = context_documents(questions)
    persist_dir = work / "llamaindex-index"
    request = {
        "documents": [{"text": d.text, "metadata": d.metadata, "id": d.id_} for d in documents],
        "questions": [q.question for q in questions],
        "model_path": str(DEFAULT_EMBEDDER.require()),
        "threads": threads,
        "top_ks": list(TOP_KS),
        "persist_dir": str(persist_dir),
    }
    (work / "worker.py").write_text(WORKER)
    (work / "request.json").write_text(json.dumps(request))
    completed = subprocess.run(
        [
            str(BENCH_PYTHON),
            str(work / "worker.py"),
            str(work / "request.json"),
            str(work / "result.json"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    if completed.returncode != 0:
        sys.exit(f"the LlamaIndex worker failed:\n{completed.stdout}\n{completed.stderr}")
    result = json.loads((work / "result.json").read_text())
    ranks = {
        k: [
            first_hit_rank(texts, question.answers)
            for texts, question in zip(result["runs"][str(k)]["texts"], questions, strict=True)
        ]
        for k in TOP_KS
    }
    extra = {key: value for key, value in result.items() if key not in ("runs", "ingest_s")}
    return SideResult(
        name="LlamaIndex defaults",
        ingest_s=result["ingest_s"],
        chunks=result["chunks"],
        ranks=ranks,
        p50_ms=statistics.median(result["runs"][str(TOP_KS[0])]["latencies_ms"]),
        disk_bytes=disk_bytes(persist_dir),
        extra=extra,
    )


def report(run: int, ours: SideResult, theirs: SideResult) -> None:
    print(f"\nrun {run}")
    print(
        f"{'system':<22} {'chunks':>6} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR':>6} "
        f"{'ingest s':>9} {'p50 ms':>7} {'disk MB':>8}"
    )
    for side in (ours, theirs):
        print(
            f"{side.name:<22} {side.chunks:6d} {side.recall(1, 5):6.3f} {side.recall(5, 5):6.3f} "
            f"{side.recall(10, 10):6.3f} {side.mrr(10):6.3f} {side.ingest_s:9.1f} "
            f"{side.p50_ms:7.1f} {side.disk_bytes / 1e6:8.2f}"
        )
    gain = ours.recall(5, 5) - theirs.recall(5, 5)
    ratio = ours.ingest_s / theirs.ingest_s
    print(
        f"recall@5: ragtune - LlamaIndex = {gain * 100:+.1f} points "
        f"(target >= +{RECALL_TARGET * 100:.0f}): {_verdict(gain >= RECALL_TARGET - 1e-9)}"
    )
    print(
        f"ingest:   ragtune / LlamaIndex = {ratio:.2f}x (target <= {INGEST_TARGET}x): "
        f"{_verdict(ratio <= INGEST_TARGET)}"
    )
    print(f"query p50: ragtune / LlamaIndex = {ours.p50_ms / theirs.p50_ms:.2f}x")


def _verdict(met: bool) -> str:
    return "target met" if met else "target NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="repeat both sides this many times")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    questions = load_squad(QA)
    threads = torch_threads()
    documents = context_documents(questions)
    print(
        f"XQuAD en: {len(questions)} questions over {len(documents)} paragraphs; "
        f"embedder {DEFAULT_EMBEDDER.require()}; torch threads {threads} on both sides "
        f"(RAGTUNE_TORCH_THREADS); {os.cpu_count()} CPUs"
    )
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="ragtune-bench-") as scratch:
            work = Path(scratch)
            theirs = run_llamaindex(questions, work, threads)
            ours = run_ragtune(questions, work)
        if run == 1:
            e = theirs.extra
            print(
                f"LlamaIndex: {e['splitter']}, {e['vector_store']} persisted with "
                f"storage_context.persist, HuggingFaceEmbedding(max_length={e['embed_max_tokens']}, "
                f"embed_batch_size={e['embed_batch_size']}), torch threads {e['torch_threads']}; "
                f"{e['truncated_chunks']} of {theirs.chunks} chunks longer than the embedder's "
                f"{e['embed_max_tokens']} word pieces (cut off); versions {e['versions']}"
            )
            print(
                f"ragtune: hybrid retrieval (BM25 + MiniLM, RRF), chunk size "
                f"{ours.extra['chunk_size']} tokens, LanceDB on disk; "
                f"{ours.extra['embedded']} chunks embedded"
            )
        print(
            f"LlamaIndex model load (inside its ingest time): {theirs.extra['model_load_s']:.1f} s"
        )
        report(run, ours, theirs)


if __name__ == "__main__":
    main()
