"""``ragtune serve`` under faults: a client gone mid-stream, a full queue, SIGTERM.

One answer slot and no queue, so that one held stream is all the server can take:
whether a slot is free again is then a plain yes or no, not a timing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.serve_server import running_server

from ragtune.llm import load_llm
from ragtune.llm.base import LLM, ChatMessage, DelegatingLLM
from ragtune.serve.config import IndexSpec, ServeConfig
from ragtune.serve.state import ServedIndex, ServerState

QUESTION = "What is the flavor of the dark energy potion?"
# Generated, up to 512 tokens. One passage keeps the prompt short, so the model
# reaches its first token sooner.
LONG_ANSWER = {"answer_mode": "generate", "top_k": 1}


def long_stream(**extra: Any) -> dict[str, Any]:
    return {
        "model": "shop",
        "messages": [{"role": "user", "content": QUESTION}],
        "stream": True,
        "ragtune": LONG_ANSWER,
        **extra,
    }


def quick_question() -> dict[str, Any]:
    return {"model": "shop", "messages": [{"role": "user", "content": QUESTION}]}


class PacedLLM(DelegatingLLM):
    """The real model, its tokens handed on no faster than one a ``pace`` seconds.

    The small model ends its answer after a sentence, in well under a second; paced,
    even a five-token answer is still being generated when the test acts on it.
    ``closed_early`` counts the model's streams closed before their end: the stop
    that frees a llama.cpp slot.
    """

    def __init__(self, model: LLM, pace: float = 1.0) -> None:
        super().__init__(model)
        self.pace = pace
        self.closed_early = 0

    def chat(self, messages: list[ChatMessage], max_tokens: int = 256) -> str:
        return "".join(self.stream_chat(messages, max_tokens))

    def stream_chat(self, messages: list[ChatMessage], max_tokens: int = 256) -> Iterator[str]:
        pieces = self.model.stream_chat(messages, max_tokens)
        finished = False
        try:
            for piece in pieces:
                time.sleep(self.pace)
                yield piece
            finished = True
        finally:
            if not finished:
                self.closed_early += 1
            pieces.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def paced_llm() -> PacedLLM:
    return PacedLLM(load_llm())


@pytest.fixture(scope="module")
def one_slot_server(shop_index_dir: Path, paced_llm: PacedLLM) -> Iterator[str]:
    config = ServeConfig(
        indexes=[IndexSpec("shop", shop_index_dir)],
        parallel=1,
        queue_size=0,
        answer_tokens=512,
        rate_limit_per_minute=10_000,
    )
    served = ServedIndex(config.indexes[0], paced_llm)  # type: ignore[arg-type]
    with running_server(config, ServerState(config, {"shop": served})) as base:
        yield base


def in_flight(base: str) -> float:
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith("ragtune_answers_in_flight "):
            return float(line.split()[1])
    raise AssertionError("no ragtune_answers_in_flight in /metrics")


def wait_until(condition: Any, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_a_full_queue_answers_429_with_retry_after(one_slot_server: str) -> None:
    url = f"{one_slot_server}/v1/chat/completions"
    with httpx.stream("POST", url, json=long_stream(), timeout=120) as held:
        assert held.status_code == 200
        lines = held.iter_lines()  # kept: a dropped line iterator closes the stream
        next(lines)  # the first event: the slot is held now
        refused = httpx.post(url, json=quick_question(), timeout=30)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "server_busy")
    assert wait_until(lambda: in_flight(one_slot_server) == 0)


def test_a_client_gone_mid_stream_frees_its_slot(one_slot_server: str, paced_llm: PacedLLM) -> None:
    url = f"{one_slot_server}/v1/chat/completions"
    closed_before = paced_llm.closed_early
    with httpx.stream("POST", url, json=long_stream(), timeout=120) as abandoned:
        assert abandoned.status_code == 200
        lines = abandoned.iter_lines()  # kept: a dropped line iterator closes the stream
        next(lines)
        assert in_flight(one_slot_server) == 1
    # The connection is closed with the answer unfinished (512 paced tokens asked).
    assert wait_until(lambda: in_flight(one_slot_server) == 0, 30), "the slot was never freed"
    assert paced_llm.closed_early == closed_before + 1  # the model was told to stop
    # The model's own slot is free too: a new generated answer runs to its end.
    body = {**quick_question(), "max_tokens": 4, "ragtune": LONG_ANSWER}
    reply = httpx.post(url, json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["finish_reason"] in ("stop", "length")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sigterm_drains_the_answer_in_flight_then_exits_0(shop_index_dir: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "ragtune", "serve", "--index", f"shop={shop_index_dir}"]
    options = ["--port", str(port), "--parallel", "1", "--answer-tokens", "48"]
    server = subprocess.Popen(
        [*command, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert wait_until(lambda: _healthy(base) or server.poll() is not None, 180)
        assert server.poll() is None, server.communicate()[1]
        lines: list[str] = []
        arrivals: list[float] = []
        failure: list[BaseException] = []
        started = threading.Event()

        def read_stream() -> None:
            try:
                body = long_stream(max_tokens=48)
                url = f"{base}/v1/chat/completions"
                with httpx.stream("POST", url, json=body, timeout=120) as reply:
                    for line in reply.iter_lines():
                        started.set()
                        if line:
                            lines.append(line)
                            arrivals.append(time.monotonic())
            except BaseException as error:  # reported by the assertion below
                failure.append(error)
                started.set()

        reader = threading.Thread(target=read_stream)
        reader.start()
        assert started.wait(120)
        server.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        reader.join(180)
        assert not failure, failure
        assert arrivals[-1] > signalled, "the answer ended before the signal: nothing drained"
        assert lines[-1] == "data: [DONE]", lines[-3:]
        final = json.loads(lines[-2].removeprefix("data: "))
        assert final["choices"][0]["finish_reason"] in ("stop", "length")
        assert server.wait(60) == 0, server.communicate()[1]
        # Gone: nothing listens any more.
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/health", timeout=5)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
