"""Many servers, one store: ``ragtune serve`` replicas over one PostgreSQL-backed index.

Two real ``ragtune serve`` processes on loopback serve the same index directory, whose
chunks live in PostgreSQL, while a third process (``ragtune ingest``) adds documents to
it. The replicas keep no state of their own: asked the same question at the same moment
they answer alike, and once the ingest has committed, both answer from what it added.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.postgres_server import PostgresServer

from ragtune.ingest import IngestSettings, ingest

SHOP_QUESTIONS = [
    "What is the flavor of the dark energy potion?",
    "How much does the Griffin Kite cost?",
    "Who illustrated the Mapmaker's Atlas?",
    "How many Scoville units is the hot sauce?",
]
# Notes whose words the shop never uses, so adding them leaves the shop's answers alone.
LEDGER_FACT = "The Quillfeather lighthouse keeper logged 4,812 storm nights in his ledger."
LEDGER_QUESTION = "How many storm nights did the Quillfeather lighthouse keeper log?"


def _notes(directory: Path) -> Path:
    directory.mkdir()
    (directory / "ledger.md").write_text(f"# Quillfeather ledger\n\n{LEDGER_FACT}\n")
    for number in range(40):
        (directory / f"tide-{number:02d}.md").write_text(
            f"# Tide table {number}\n\nOn tide table {number} the Quillfeather breakwater "
            f"shows {number * 7 % 13} barnacle markers and {number % 5} driftwood posts.\n"
        )
    return directory


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _ask(base: str, question: str) -> tuple[str, list[str | None]]:
    body: dict[str, Any] = {"model": "shop", "messages": [{"role": "user", "content": question}]}
    reply = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    return answer["choices"][0]["message"]["content"], [s["url"] for s in answer["sources"]]


@pytest.fixture()
def replicas(
    postgres: PostgresServer, shop_url: str, tmp_path: Path
) -> Iterator[tuple[Path, list[str]]]:
    index_dir = tmp_path / "index"
    store = postgres.table_url(f"t_{uuid.uuid4().hex[:12]}")
    settings = IngestSettings(
        crawl=True, max_pages=60, render="never", skip_failures=True, store=store
    )
    ingest([f"{shop_url}/products"], index_dir, settings)
    servers: list[subprocess.Popen[str]] = []
    bases: list[str] = []
    try:
        for _ in range(2):
            port = _free_port()
            command = [sys.executable, "-m", "ragtune", "serve", "--index", f"shop={index_dir}"]
            servers.append(
                subprocess.Popen(
                    [*command, "--port", str(port), "--parallel", "1"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                    env={**os.environ, "COLUMNS": "200"},
                )
            )
            bases.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 180
        for server, base in zip(servers, bases, strict=True):
            while not _healthy(base):
                assert server.poll() is None, server.communicate()[1][-2000:]
                assert time.monotonic() < deadline, "a replica did not start"
                time.sleep(0.2)
        yield index_dir, bases
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def test_two_replicas_answer_alike_while_a_third_process_ingests(
    replicas: tuple[Path, list[str]], tmp_path: Path
) -> None:
    index_dir, (first, second) = replicas
    before = {question: _ask(first, question) for question in SHOP_QUESTIONS}
    assert "cherry" in before[SHOP_QUESTIONS[0]][0].lower()

    writer = subprocess.Popen(
        [sys.executable, "-m", "ragtune", "ingest", str(_notes(tmp_path / "notes"))]
        + ["--index", str(index_dir), "--commit-every", "8"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    compared = 0
    try:
        while writer.poll() is None or compared < len(SHOP_QUESTIONS):
            question = SHOP_QUESTIONS[compared % len(SHOP_QUESTIONS)]
            # first, second, first: when the first replica answered the same both times,
            # nothing it reads changed in between, so the second must answer alike.
            one, other, again = _ask(first, question), _ask(second, question), _ask(first, question)
            if one == again:
                assert other == one, question
                # The notes share no words with the shop: its answers stay as they were.
                assert one == before[question], question
                compared += 1
        assert writer.wait(300) == 0, writer.communicate()[1][-2000:]
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert compared >= len(SHOP_QUESTIONS)

    # Both replicas answer from what the other process committed, with no restart.
    answers = [_ask(base, LEDGER_QUESTION) for base in (first, second)]
    assert answers[0] == answers[1]
    assert "4,812" in answers[0][0], answers[0]
    health = httpx.get(f"{second}/health", timeout=10).json()
    assert health["indexes"]["shop"]["documents"] > 41
