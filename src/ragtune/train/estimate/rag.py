"""What the RAG route costs: ingest time, index size on disk, per-question latency.

Ingest: the files are read and chunked exactly as ``ragtune ingest`` does (the same
extraction, the same chunker counting the embedder's word pieces), so the chunk count and
their lengths are exact; embedding dominates the time, at a cost a chunk of
``a + b·tokens`` seconds, measured on this machine with the real embedder (cached like the
machine's figures), or ``2·N_embedder`` FLOPs a token on a GPU profile.

Index size: per chunk, the vector (dimensions x 4 bytes) and the store's and keyword
index's overhead, plus the chunk's text stored about ``TEXT_COPIES`` times (the row, the
full-text index, the vocabulary): constants read off real indexes (bench/estimate_accuracy.py).

A question: its embedding, the search, the prompt (the top chunks and the question) read
by the LLM, and the answer generated. On this CPU llama.cpp reads a prompt at about a
quarter of the measured matmul peak and generates at the memory bandwidth plus a
per-layer cost a token (SmolLM2-135M Q4_1: 70-140 and 44-62 tokens/s, ../shared/GUIDE.md);
on a GPU profile, prompts at peak x MFU and generation at 60% of the memory bandwidth.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.errors import EstimateError
from ragtune.train.estimate.hardware import Hardware

INDEX_BYTES_PER_CHUNK = 2600.0  # vector, ids, metadata, store pages
TEXT_COPIES = 2.5
INGEST_SETUP_SECONDS = 1.0  # a GPU profile's (unmeasured) fixed cost of an ingest run
STORE_SECONDS_PER_CHUNK = 0.002
SEARCH_SECONDS = 0.015
PROMPT_EFFICIENCY = 0.25  # llama.cpp's prompt FLOP/s over the measured matmul peak (CPU)
LAYER_SECONDS_PER_TOKEN = 0.00055  # llama.cpp's per-layer cost of a generated token (CPU)
PROMPT_OVERHEAD_TOKENS = 120  # system prompt, question, template
EMBEDDER_PARAMETERS = 22.7e6  # all-MiniLM-L6-v2
# What ingest holds a chunk while it runs (text, Markdown, vector, rows for the store), in
# multiples of its text's bytes plus the vector's.
INGEST_COPIES = 6
COST_NAMES = ("load_seconds", "chunk_seconds", "token_seconds", "ingest_rss", "ingest_seconds")
# The one-paragraph document the fixed cost of an ingest is measured with.
PROBE_TEXT = "A one-paragraph document that ragtune estimate ingests to time an ingest run.\n"


@dataclass
class RagEstimate:
    files: int
    documents: int
    chunks: int
    chunk_tokens: int  # word pieces embedded, all chunks
    text_bytes: int
    ingest_seconds: dict[str, float]
    ingest_memory: float  # peak RSS bytes of the ingest process (0: not modelled on a GPU)
    index_bytes: float
    question_seconds: dict[str, float]
    llm_parameters: int
    answer_tokens: int
    top_k: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "documents": self.documents,
            "chunks": self.chunks,
            "chunk_tokens": self.chunk_tokens,
            "text_bytes": self.text_bytes,
            "ingest_seconds": {**self.ingest_seconds, "total": sum(self.ingest_seconds.values())},
            "ingest_memory_bytes": round(self.ingest_memory),
            "index_bytes": round(self.index_bytes),
            "question_seconds": {
                **self.question_seconds,
                "total": sum(self.question_seconds.values()),
            },
            "llm_parameters": self.llm_parameters,
            "answer_tokens": self.answer_tokens,
            "top_k": self.top_k,
        }


def estimate_rag(
    paths: list[Path],
    hardware: Hardware,
    llm: Any,
    chunk_size: int | None = None,
    top_k: int = 5,
    answer_tokens: int = 128,
) -> RagEstimate:
    """``llm`` is a ModelSpec of the answering model; its weights' bytes as loaded by
    llama.cpp are taken from a GGUF file when it names one."""
    from ragtune.index.chunking import ChunkingConfig, MarkdownChunker
    from ragtune.index.embedding import make_embedder

    if not paths:
        raise EstimateError("no data: give the files or folders to ingest")
    embedder = make_embedder(None)
    config = ChunkingConfig(chunk_size) if chunk_size else ChunkingConfig()
    chunker = MarkdownChunker(embedder.count_tokens, config)
    files, documents, chunks, tokens, text_bytes = 0, 0, 0, 0, 0
    lengths: list[int] = []
    for file in _files(paths):
        files += 1
        for document in _documents(file):
            documents += 1
            for chunk in chunker.chunk(document.text, document.metadata.get("title") or ""):
                chunks += 1
                count = min(embedder.max_tokens, embedder.count_tokens(chunk.embed_text))
                lengths.append(count)
                tokens += count
                text_bytes += len(chunk.text.encode())
    if chunks == 0:
        raise EstimateError("the data holds no text to index")
    ingest = {"setup": INGEST_SETUP_SECONDS}
    process = 0.0
    if hardware.machine is not None:
        costs = embedding_costs(hardware)
        # a one-chunk ingest, measured: start-up, the embedder, the store, the report
        ingest["setup"] = costs["ingest_seconds"]
        process = costs["ingest_rss"]
        ingest["embedding"] = chunks * costs["chunk_seconds"] + tokens * costs["token_seconds"]
        ingest["store"] = chunks * STORE_SECONDS_PER_CHUNK
        question_embed = costs["chunk_seconds"] + 20 * costs["token_seconds"]
    else:
        assert hardware.mfu is not None
        rate = hardware.peak_flops * hardware.mfu
        ingest["embedding"] = 2 * EMBEDDER_PARAMETERS * tokens / rate + chunks * 0.001
        ingest["store"] = chunks * STORE_SECONDS_PER_CHUNK
        question_embed = 0.002
    memory = process + chunks * embedder.dimensions * 4 * 2 + INGEST_COPIES * text_bytes
    index_bytes = chunks * (INDEX_BYTES_PER_CHUNK + embedder.dimensions * 4)
    index_bytes += TEXT_COPIES * text_bytes
    mean_chunk = tokens / chunks
    prompt_tokens = PROMPT_OVERHEAD_TOKENS + min(top_k, chunks) * mean_chunk
    question = {
        "retrieval": question_embed + SEARCH_SECONDS,
        "prompt": prompt_tokens * _prompt_seconds_per_token(hardware, llm),
        "generation": answer_tokens * _generation_seconds_per_token(hardware, llm),
    }
    return RagEstimate(
        files,
        documents,
        chunks,
        tokens,
        text_bytes,
        ingest,
        memory,
        index_bytes,
        question,
        llm.parameters,
        answer_tokens,
        top_k,
    )


def llm_weight_bytes(llm: Any) -> float:
    """A GGUF's size when the model came from one (what llama.cpp maps), else fp16."""
    directory = llm.directory
    if directory is not None:
        source = directory / "ragtune_source.json"
        try:
            gguf = Path(json.loads(source.read_text())["gguf"])
            return float(gguf.stat().st_size)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return float(llm.parameters * 2)


def _prompt_seconds_per_token(hardware: Hardware, llm: Any) -> float:
    flops = 2 * llm.parameters
    if hardware.machine is not None:
        return flops / (hardware.machine.peak_flops * PROMPT_EFFICIENCY)
    assert hardware.mfu is not None
    return flops / (hardware.peak_flops * hardware.mfu)


def _generation_seconds_per_token(hardware: Hardware, llm: Any) -> float:
    weights = llm_weight_bytes(llm)
    if hardware.machine is not None:
        layers = llm.shape.layers
        return weights / hardware.machine.bandwidth + layers * LAYER_SECONDS_PER_TOKEN
    assert hardware.gpu is not None
    return weights / (hardware.gpu.bandwidth * 0.6)


def _files(paths: list[Path]) -> list[Path]:
    from ragtune.extract.files import folder_files

    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += [file for file, status in folder_files(path) if _readable(status)]
        elif path.is_file():
            found.append(path)
        else:
            raise EstimateError(f"data {path} does not exist")
    return found


def _readable(status: Any) -> bool:
    from ragtune.extract.files import Skipped

    return not isinstance(status, Skipped | Exception)


def _documents(file: Path) -> list[Any]:
    from ragtune.errors import RagtuneError
    from ragtune.extract.files import file_documents

    try:
        return file_documents(file)
    except RagtuneError:  # ingest reports and skips a file it cannot read
        return []


def embedding_costs(hardware: Hardware, refresh: bool = False) -> dict[str, float]:
    """Seconds to load the embedder, and a chunk's embedding cost ``a + b·tokens``,
    measured once at two lengths with the real embedder and cached (``refresh``: measured
    again)."""
    from ragtune.runtime import cache_dir
    from ragtune.train.estimate.hardware import _cache_key

    assert hardware.machine is not None
    import torch

    key = _cache_key(hardware.machine.threads, torch.__version__)
    path = cache_dir("estimate") / f"embedder-{key}.json"
    try:
        if not refresh:
            cached = json.loads(path.read_text())
            return {name: float(cached[name]) for name in COST_NAMES}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    costs = _measure_embedding()
    costs.update(_ingest_process(hardware.machine.threads))
    try:
        from ragtune.atomic import write_json_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, costs)
    except OSError:
        pass
    return costs


# Runs ``ragtune ingest`` in this interpreter and writes its peak RSS (VmHWM) to the file
# named last on the command line at exit. The peak is read inside the child: the
# ``ru_maxrss`` that wait4 reports counts the parent's pages mapped before exec (a fork of
# this process, with torch and the embedder loaded) and overstated ingest by 80-100 MB.
_INGEST_CHILD = """
import atexit, runpy, sys
target = sys.argv.pop()
def peak():
    with open("/proc/self/status") as status:
        kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(target, "w") as out:
        out.write(kb)
atexit.register(peak)
sys.argv[0] = "ragtune"
runpy.run_module("ragtune", run_name="__main__", alter_sys=True)
"""


def _ingest_process(threads: int) -> dict[str, float]:
    """Peak RSS (bytes) and wall seconds of ``ragtune ingest`` of one short text file into
    a new index, in a fresh interpreter: what every ingest pays whatever its size (the
    imports, the embedder, opening and committing the store, the report). Run twice and
    the second kept, so a first-time conversion of the embedder is not counted."""
    import subprocess
    import sys
    import tempfile

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "RAGTUNE_TORCH_THREADS": str(threads)}
    figures = {}
    for attempt in range(2):
        with tempfile.TemporaryDirectory() as folder:
            text = Path(folder) / "probe.txt"
            text.write_text(PROBE_TEXT, encoding="utf-8")
            peak = Path(folder) / "peak"
            command = [sys.executable, "-c", _INGEST_CHILD, "ingest", str(text)]
            command += ["--index", str(Path(folder) / "index"), str(peak)]
            began = time.perf_counter()
            done = subprocess.run(command, capture_output=True, env=env, check=False)
            seconds = time.perf_counter() - began
            try:
                rss = float(peak.read_text()) * 1024
            except (OSError, ValueError):
                rss = 0.0
        if done.returncode != 0 or rss <= 0:
            raise EstimateError(f"cannot measure this machine: ingest failed (try {attempt + 1})")
        figures = {"ingest_rss": rss, "ingest_seconds": seconds}
    return figures


def _measure_embedding() -> dict[str, float]:
    from ragtune.index.embedding import make_embedder

    began = time.perf_counter()
    embedder = make_embedder(None)
    embedder.embed(["warm up"])
    load = time.perf_counter() - began
    words = ("the quick brown fox jumps over a lazy dog near the river bank " * 40).split()
    short, long = " ".join(words[:24]), " ".join(words[:170])
    timings = {}
    for text in (short, long):
        embedder.embed([text])
        best = float("inf")
        for _ in range(6):
            began = time.perf_counter()
            embedder.embed([text])
            best = min(best, time.perf_counter() - began)
        timings[min(embedder.max_tokens, embedder.count_tokens(text))] = best
    (n0, t0), (n1, t1) = sorted(timings.items())
    per_token = max(0.0, (t1 - t0) / (n1 - n0))
    return {
        "load_seconds": load,
        "chunk_seconds": max(0.0, t0 - n0 * per_token),
        "token_seconds": per_token,
    }
