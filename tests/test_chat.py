"""Chat: history in the prompt, follow-ups rewritten for retrieval, the interactive CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers import POTION_PATH

from ragtune import Response, VectorStoreIndex
from ragtune.llm import load_llm
from ragtune.llm.base import LLM, ChatMessage
from ragtune.query.chat import ChatSession, is_follow_up
from ragtune.query.terms import key_terms

DEMO_QUESTION = "What is the flavor of the dark energy potion?"
FOLLOW_UP = "How much does it cost?"
ANSWER_TOKENS = 24


@pytest.fixture(scope="module")
def llm() -> LLM:
    return load_llm()


@pytest.fixture()
def session(shop_index_dir: Path, llm: LLM) -> ChatSession:
    engine = VectorStoreIndex.load(shop_index_dir).as_query_engine(
        llm=llm, answer_tokens=ANSWER_TOKENS
    )
    return ChatSession(engine)


def urls(response: Response) -> list[str]:
    return [n.metadata["url"] for n in response.source_nodes]


def test_the_rewrite_rule() -> None:
    assert key_terms(DEMO_QUESTION) == ["flavor", "dark", "energy", "potion"]
    assert is_follow_up(FOLLOW_UP)
    assert is_follow_up("And the Griffin Kite?")
    assert is_follow_up("Why?")
    assert not is_follow_up("How much does the Griffin Kite cost?")
    assert not is_follow_up(DEMO_QUESTION)


def test_follow_up_retrieves_the_previous_subject_and_reset_forgets_it(
    session: ChatSession, shop_url: str
) -> None:
    potion = shop_url + POTION_PATH
    # Alone, the follow-up finds no potion: the rewrite is what brings it back.
    assert potion not in urls(Response("", session.engine.retriever.retrieve(FOLLOW_UP)))

    first = session.ask(DEMO_QUESTION)
    assert first.metadata["rewritten"] is False
    assert urls(first)[0] == potion

    tokens, second = session.stream(FOLLOW_UP)
    pieces = list(tokens)
    assert second.response == "".join(pieces).strip()
    assert second.metadata["rewritten"] is True
    assert "dark energy potion" in second.metadata["retrieval_query"]
    assert urls(second)[0] == potion
    assert second.metadata["history_turns"] == 1  # the first turn is in the prompt
    assert [turn.question for turn in session.history] == [DEMO_QUESTION, FOLLOW_UP]
    assert session.last_response is second

    session.reset()
    assert session.history == []
    assert session.last_response is None
    rewrite = session.rewrite(FOLLOW_UP)
    assert (rewrite.rewritten, rewrite.retrieval_query) == (False, FOLLOW_UP)


class LongWindedLLM:
    """The real model's tokenizer and window, but every answer is a long canned paragraph,
    so a conversation's history outgrows the window in a few fast turns."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.prompts: list[list[ChatMessage]] = []

    @property
    def name(self) -> str:
        return "long-winded"

    @property
    def context_window(self) -> int:
        return self.inner.context_window

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def chat(self, messages: list[ChatMessage], max_tokens: int = 256) -> str:
        self.prompts.append(messages)
        return "The dark energy potion is a cherry cola drink with caffeine [1]. " * 8

    def stream_chat(self, messages: list[ChatMessage], max_tokens: int = 256) -> Iterator[str]:
        yield self.chat(messages, max_tokens)


def test_a_long_conversation_still_fits_the_window(shop_index_dir: Path, llm: LLM) -> None:
    fake = LongWindedLLM(llm)
    answer_tokens = 128
    # Grounding off: the canned answer repeats itself, and its repeats must stay long.
    engine = VectorStoreIndex.load(shop_index_dir).as_query_engine(
        llm=fake, answer_tokens=answer_tokens, grounding="off"
    )
    session = ChatSession(engine, max_history_turns=10)
    questions = [DEMO_QUESTION, FOLLOW_UP, "Is it in stock?", "What is in it?"] * 2
    for question in questions:
        session.ask(question + " " + "Please answer in detail. " * 10)
    assert len(fake.prompts) == len(questions)
    window = llm.context_window
    for messages in fake.prompts:
        text = "\n".join(message["content"] for message in messages)
        assert llm.count_tokens(text) + answer_tokens <= window
    last = fake.prompts[-1]
    assert 2 < len(last) < 2 + 2 * 10  # some history, not all of it
    assert session.last_response is not None
    assert 0 < session.last_response.metadata["history_turns"] < len(questions) - 1
    assert session.last_response.source_nodes  # history never crowds out every source


def test_chat_cli_reads_questions_from_stdin(shop_index_dir: Path, shop_url: str) -> None:
    script = "\n".join(
        [
            DEMO_QUESTION,
            "",
            FOLLOW_UP,
            "/sources",
            "/bogus",
            "x" * 10_000,
            "/reset",
            "/exit",
            "never asked",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-m", "ragtune", "chat", "--index", str(shop_index_dir)]
        + ["--answer-tokens", str(ANSWER_TOKENS)],
        input=script + "\n",
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    sources = result.stdout.split("Sources", 1)[1]
    assert shop_url + POTION_PATH in sources
    stderr = [line for line in result.stderr.splitlines() if line.strip()]
    assert any(line.startswith("(searched for: flavor dark energy potion") for line in stderr)
    assert any(line.startswith("unknown command /bogus") for line in stderr)
    assert "error: the question is 10000 characters; the limit is 4000" in stderr
    assert "(history cleared)" in stderr
    assert stderr[-1].startswith("2 turns in ")
