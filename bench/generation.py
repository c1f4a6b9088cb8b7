"""Generation through ragtune against the raw engine, and time to first token.

.venv/bin/python bench/generation.py [--runs 5]

1. Tokens/s: the demo question's packed prompt sent (a) through ragtune's
   `LlamaCppLLM.stream_chat` and (b) straight to the same xllamacpp server with
   the same request (greedy, same max_tokens, same repeat penalty), alternating,
   several runs each; generated tokens counted with the model's tokenizer.
2. Time to first token for the demo question with the default model:
   - warm: model loaded in a fresh llama.cpp server and one other question
     asked (llama.cpp may reuse the shared system-prompt prefix, as a
     long-lived process or `ragtune chat` would; never this prompt), measured
     from `engine.stream(...)` to the first piece: retrieval, prompt packing,
     prompt evaluation, first token;
   - cold: `ragtune ask` as a new process, from start to the first answer byte
     on stdout: interpreter, imports, index and model loading included.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ragtune import VectorStoreIndex, WebReader
from ragtune.llm.llamacpp import LlamaCppLLM
from ragtune.shop_server import serve_shop

DEMO_QUESTION = "What is the flavor of the dark energy potion?"
WARM_UP_QUESTION = "How much does the griffin kite cost?"
TARGET_TTFT_S = 1.5
TARGET_RATIO = 0.9


def raw_generate(llm: LlamaCppLLM, request: dict[str, Any]) -> str:
    """The same request straight to xllamacpp, streamed, pieces joined."""
    pieces: list[str] = []
    done = threading.Event()

    def on_chunk(chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices", []):
            text = (choice.get("delta") or {}).get("content")
            if text:
                pieces.append(text)

    def run() -> None:
        llm._server.handle_chat_completions({**request, "stream": True}, on_chunk)
        done.set()

    threading.Thread(target=run).start()
    done.wait()
    return "".join(pieces)


def tokens_per_second(llm: LlamaCppLLM, messages: list[Any], runs: int) -> tuple[float, float]:
    request = llm._request(messages, 128, True)
    ours, raw = [], []
    for _ in range(runs):
        for rate, generate in (
            (ours, lambda: "".join(llm.stream_chat(messages, max_tokens=128))),
            (raw, lambda: raw_generate(llm, request)),
        ):
            started = time.perf_counter()
            text = generate()
            elapsed = time.perf_counter() - started
            rate.append(llm.count_tokens(text) / elapsed)
    return statistics.median(ours), statistics.median(raw)


def cold_ttft(index_dir: Path) -> float:
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "ragtune", "ask", DEMO_QUESTION, "--index", str(index_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    process.stdout.read(1)
    first = time.perf_counter() - started
    process.communicate()
    return first


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, serve_shop() as base:
        index_dir = Path(scratch) / "index"
        documents = WebReader(crawl=True).load_data([f"{base}/products"])
        index = VectorStoreIndex.from_documents(documents, persist_dir=index_dir)
        engine = index.as_query_engine()
        llm = engine.llm
        assert isinstance(llm, LlamaCppLLM)
        llm.load()
        print(f"model {llm.name}, {llm.threads} threads, context {llm.context_window}")

        warm = []
        for _ in range(args.runs):
            # A fresh llama.cpp server each run: the model is loaded, but no
            # prompt has been seen, so nothing of this one is cached.
            fresh = LlamaCppLLM()
            fresh.load()
            engine._llm = fresh
            engine.query(WARM_UP_QUESTION)  # warms the embedder and the index, not the prompt
            started = time.perf_counter()
            pieces, response = engine.stream(DEMO_QUESTION)
            next(iter(pieces))
            warm.append(time.perf_counter() - started)
            for _ in pieces:
                pass
        prompt_tokens = response.metadata.get("prompt_tokens")
        warm_p50 = statistics.median(warm)
        print(f"demo question: {prompt_tokens} prompt tokens")
        print(f"TTFT warm  p50 {warm_p50:.2f} s (min {min(warm):.2f}, max {max(warm):.2f})")
        verdict = "met" if warm_p50 <= TARGET_TTFT_S else "NOT met"
        print(f"  target <= {TARGET_TTFT_S} s (warm): {verdict}")

        packed = engine._prepare(DEMO_QUESTION, engine._retrieve(DEMO_QUESTION)[0])
        ours, raw = tokens_per_second(llm, packed.messages, args.runs)
        ratio = ours / raw
        print(
            f"generation: ragtune {ours:.1f} tok/s, raw xllamacpp {raw:.1f} tok/s, "
            f"ratio {ratio:.2f} (target >= {TARGET_RATIO}: "
            f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})"
        )
        del engine, llm

        cold = [cold_ttft(index_dir) for _ in range(min(3, args.runs))]
        print(f"TTFT cold (new `ragtune ask` process) p50 {statistics.median(cold):.2f} s")


if __name__ == "__main__":
    main()
