"""``ragtune serve`` under load: 1, 4 and 8 concurrent streaming clients, then RSS over many.

.venv/bin/python bench/serve_load.py [--requests 100] [--rss-requests 1000] [--index DIR]

A real server (``ragtune serve`` as a subprocess on 127.0.0.1, generated answers,
``--parallel 8``) over the demo shop's index, and real clients: the ``openai``
package streaming with ``stream_options.include_usage``, one thread per client, each
asking the shop's questions in turn. Loopback only; bounded in requests and time
(``--max-seconds``).

1. For 1, 4 and 8 clients, ``--requests`` answers each: failed requests, aggregate
   generated tokens/s (completion tokens of every answer over the level's wall
   time), p50/p95 time to first token (request sent to first content chunk).
   Target: 0 failures, tokens/s at 4 clients at least 1.5x one client's.
2. RSS of the server process: after the first level (warm-up), then over
   ``--rss-requests`` more answers at 8 clients, sampled every tenth of them.
   Target: the last sample within 10% of the warm-up one.

Prints one JSON object (also written to ``--output``) with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai

from ragtune.shop_server import crawl_shop

QUESTIONS = [
    "What is the flavor of the dark energy potion?",
    "How much does the Griffin Kite cost?",
    "Who illustrated the Mapmaker's Atlas?",
    "How long does the sand take to run through the hourglass?",
    "What is the maximum weight the hammock can hold?",
    "Which card game won the Golden Meeple award?",
    "Which customer walked across hot coals at a festival?",
    "How many Scoville units is the hot sauce?",
    "Which product is cut by hand in Portland?",
    "What is the price of the Bottomless Backpack?",
    "Which speaker helps a baby sleep through the night?",
    "How much caffeine does the Dark Energy Potion contain?",
]
LEVELS = (1, 4, 8)
TARGET_SPEEDUP = 1.5
TARGET_RSS_GROWTH = 0.10


@dataclass
class Outcome:
    ok: bool
    seconds: float = 0.0
    first_token_s: float | None = None
    completion_tokens: int = 0
    error: str = ""


@dataclass
class Level:
    clients: int
    outcomes: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        good = [o for o in self.outcomes if o.ok]
        firsts = sorted(o.first_token_s for o in good if o.first_token_s is not None)
        tokens = sum(o.completion_tokens for o in good)
        return {
            "clients": self.clients,
            "requests": len(self.outcomes),
            "failed": len(self.outcomes) - len(good),
            "errors": sorted({o.error for o in self.outcomes if not o.ok})[:5],
            "wall_s": round(self.wall_s, 2),
            "generated_tokens": tokens,
            "tokens_per_s": round(tokens / self.wall_s, 2) if self.wall_s else 0.0,
            "ttft_p50_s": round(percentile(firsts, 50), 3) if firsts else None,
            "ttft_p95_s": round(percentile(firsts, 95), 3) if firsts else None,
        }


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def ask(client: openai.OpenAI, question: str, answer_tokens: int) -> Outcome:
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    try:
        stream = client.chat.completions.create(
            model="shop",
            messages=[{"role": "user", "content": question}],
            stream=True,
            max_tokens=answer_tokens,
            stream_options={"include_usage": True},
            extra_body={"ragtune": {"answer_mode": "generate"}},
        )
        finished = False
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content and first is None:
                first = time.perf_counter() - started
            if chunk.choices and chunk.choices[0].finish_reason:
                finished = True
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        if not finished:
            return Outcome(False, time.perf_counter() - started, error="stream ended early")
    except openai.OpenAIError as error:
        return Outcome(False, time.perf_counter() - started, error=type(error).__name__)
    return Outcome(True, time.perf_counter() - started, first, tokens)


def run_level(
    base: str,
    clients: int,
    requests: int,
    answer_tokens: int,
    deadline: float,
    on_done: Callable[[int], None] | None = None,
) -> Level:
    """``requests`` answers shared by ``clients`` threads, each asking in turn."""
    level = Level(clients)
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="local", max_retries=0, timeout=300)
        while time.monotonic() < deadline:
            with lock:
                number = next(counter, None)
            if number is None:
                return
            outcome = ask(client, QUESTIONS[number % len(QUESTIONS)], answer_tokens)
            with lock:
                level.outcomes.append(outcome)
                done = len(level.outcomes)
            if on_done:
                on_done(done)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    level.wall_s = time.perf_counter() - started
    return level


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    index: Path, port: int, parallel: int, queue: int, log: Path
) -> subprocess.Popen[str]:
    command = [
        sys.executable, "-m", "ragtune", "serve",
        "--index", f"shop={index}",
        "--port", str(port),
        "--parallel", str(parallel),
        "--queue-size", str(queue),
        "--rate-limit", "1000000/min",
    ]  # fmt: skip
    with log.open("w") as stderr:  # a file, not a pipe nobody reads while it runs
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, text=True)


def wait_healthy(base: str, server: subprocess.Popen[str], log: Path, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {log.read_text()[-500:]}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not answer /health")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100, help="answers per client level")
    parser.add_argument("--rss-requests", type=int, default=1000, help="answers for the RSS run")
    parser.add_argument("--answer-tokens", type=int, default=64)
    parser.add_argument("--parallel", type=int, default=8, help="the server's answer slots")
    parser.add_argument("--index", type=Path, help="the shop index (default: built now)")
    parser.add_argument("--max-seconds", type=float, default=3600, help="stop asking after this")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ragtune-serve-load-") as scratch:
        index = args.index
        if index is None:
            index = Path(scratch) / "shop"
            print(f"building the shop index: {crawl_shop(index)} chunks", file=sys.stderr)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = Path(scratch) / "serve.log"
        server = start_server(index, port, args.parallel, 4 * args.parallel, log)
        try:
            wait_healthy(base, server, log)
            result = measure(base, server.pid, args)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


def measure(base: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.max_seconds
    levels: dict[int, dict[str, Any]] = {}
    rss_warm: int | None = None
    for clients in LEVELS:
        level = run_level(base, clients, args.requests, args.answer_tokens, deadline)
        levels[clients] = level.summary()
        print(f"{clients} client(s): {json.dumps(levels[clients])}", file=sys.stderr)
        if rss_warm is None:
            rss_warm = rss_bytes(pid)
    assert rss_warm is not None
    samples: list[tuple[int, int]] = [(0, rss_warm)]
    every = max(1, args.rss_requests // 10)

    def sample(done: int) -> None:
        if done % every == 0:
            samples.append((done, rss_bytes(pid)))

    rss_level = run_level(base, 8, args.rss_requests, args.answer_tokens, deadline, sample)
    rss_end = rss_bytes(pid)
    one, four = levels[1]["tokens_per_s"], levels[4]["tokens_per_s"]
    speedup = round(four / one, 2) if one else None
    growth = round((rss_end - rss_warm) / rss_warm, 4)
    failed = sum(level["failed"] for level in levels.values()) + rss_level.summary()["failed"]
    return {
        "cpu_count": os.cpu_count(),
        "answer_tokens": args.answer_tokens,
        "parallel": args.parallel,
        "levels": levels,
        "speedup_4_vs_1": speedup,
        "rss": {
            "after_warm_up_mb": round(rss_warm / 2**20, 1),
            "end_mb": round(rss_end / 2**20, 1),
            "growth": growth,
            "requests": len(rss_level.outcomes),
            "samples_mb": {str(n): round(b / 2**20, 1) for n, b in sorted(samples)},
        },
        "rss_run": rss_level.summary(),
        "failed_requests": failed,
        "targets": {
            "no_failures": failed == 0,
            f"speedup_at_least_{TARGET_SPEEDUP}": speedup is not None and speedup >= TARGET_SPEEDUP,
            f"rss_growth_at_most_{TARGET_RSS_GROWTH}": growth <= TARGET_RSS_GROWTH,
        },
    }


if __name__ == "__main__":
    main()
