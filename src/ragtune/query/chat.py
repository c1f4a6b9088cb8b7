"""A conversation over an index: history in the prompt, follow-ups rewritten for retrieval.

``ChatSession(engine).ask(question)`` answers like ``engine.query`` and
remembers the turn; ``stream(question)`` does the same token by token.

**Follow-up rewrite.** Retrieval sees one question at a time, so "How much
does it cost?" after "What is the flavor of the dark energy potion?" would
search for nothing in particular. A small model rewrites such questions
unreliably, so the rewrite is a deterministic rule:

- every turn has a *topic*: the key terms of its question (stop words,
  question words and pronouns removed), then the words of the title of the
  passage its answer cited first (or of its best source) that are not
  already there, at most ``MAX_TOPIC_WORDS`` words;
- a question is a *follow-up* when there is history and it has an anaphor
  (it, its, they, them, their, that, this, these, those, one, he, she...), or
  opens with an ellipsis ("and ...", "also ...", "what about ...", "how
  about ..."), or has at most one key term of its own ("Why?", "Price?");
- a follow-up is retrieved as ``"<previous topic> <question>"`` and inherits
  that topic, so a chain of follow-ups stays on the subject until a
  standalone question sets a new one. Other questions are retrieved as
  they are.

The model itself is asked the question as the user wrote it, after the
latest turns of the conversation (``max_history_turns``, whole turns, within
a share of the window: see :func:`ragtune.query.prompt.pack_prompt`).
``reset()`` forgets the history, so the next question is not rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragtune.documents import NodeWithScore, Response
from ragtune.query.terms import ANAPHORS, WORD, key_terms
from ragtune.questions import MAX_QUERY_CHARS

if TYPE_CHECKING:
    from ragtune.index.vector_index import QueryEngine

MAX_TOPIC_WORDS = 12


ELLIPSIS_OPENINGS = ("and ", "also ", "what about ", "how about ", "what else", "same for ")
_MARKER = re.compile(r"\s*\[\s*\d+(?:\s*,\s*\d+)*\s*\]")


def is_follow_up(question: str) -> bool:
    """Whether ``question`` leans on an earlier turn (the rule in the module's docstring)."""
    words = {word.strip("'-") for word in WORD.findall(question.casefold())}
    words |= {word[:-2] for word in words if word.endswith("'s")}
    opening = " ".join(question.casefold().split()) + " "
    return (
        bool(words & ANAPHORS)
        or opening.startswith(ELLIPSIS_OPENINGS)
        or len(key_terms(question)) <= 1
    )


@dataclass
class Turn:
    """One question and its answer; ``retrieval_query`` is what retrieval was given."""

    question: str
    retrieval_query: str
    rewritten: bool
    topic: str
    response: Response

    @property
    def answer(self) -> str:
        return self.response.response


@dataclass
class Rewrite:
    retrieval_query: str
    rewritten: bool
    topic: str = ""


class ChatSession:
    """A conversation with a query engine (``index.as_query_engine()``)."""

    def __init__(self, engine: QueryEngine, max_history_turns: int = 3) -> None:
        self.engine = engine
        self.max_history_turns = max_history_turns
        self._history: list[Turn] = []

    @property
    def history(self) -> list[Turn]:
        """The turns so far, oldest first (a copy)."""
        return list(self._history)

    @property
    def last_response(self) -> Response | None:
        return self._history[-1].response if self._history else None

    def reset(self) -> None:
        """Forget the conversation: the next question starts afresh."""
        self._history.clear()

    def rewrite(self, question: str) -> Rewrite:
        """The standalone retrieval query for ``question`` given the history."""
        question = " ".join(question.split())
        previous = self._history[-1] if self._history else None
        if previous is None or not previous.topic or not is_follow_up(question):
            return Rewrite(question, rewritten=False)
        query = f"{previous.topic} {question}"
        if len(query) > MAX_QUERY_CHARS:
            return Rewrite(question, rewritten=False)
        return Rewrite(query, rewritten=True, topic=previous.topic)

    def ask(self, question: str) -> Response:
        """Answer ``question`` in the context of the conversation, and remember the turn."""
        rewrite = self.rewrite(question)
        response = self.engine.query(
            question, history=self._prompt_history(), retrieval_query=rewrite.retrieval_query
        )
        self._remember(question, rewrite, response)
        return response

    def stream(self, question: str) -> tuple[Iterator[str], Response]:
        """Tokens as they arrive and the Response they fill in; the turn is
        remembered once the tokens are exhausted."""
        rewrite = self.rewrite(question)
        tokens, response = self.engine.stream(
            question, history=self._prompt_history(), retrieval_query=rewrite.retrieval_query
        )

        def remembered() -> Iterator[str]:
            yield from tokens
            self._remember(question, rewrite, response)

        return remembered(), response

    def remember(
        self, question: str, answer: str, sources: Callable[[str], list[NodeWithScore]]
    ) -> None:
        """Take an earlier turn as it was answered elsewhere, by the same rule as ``ask``.

        A client that keeps the conversation itself (OpenAI's chat API: every request
        carries the whole history) sends each turn back; replaying them in order
        rebuilds the topics the rewrite needs. ``sources(retrieval_query)`` gives the
        passages a standalone turn would be answered from (its topic takes the best
        one's title); a follow-up inherits its topic and asks for none.
        """
        rewrite = self.rewrite(question)
        nodes = [] if rewrite.rewritten else sources(rewrite.retrieval_query)
        self._remember(question, rewrite, Response(answer, nodes))

    def _prompt_history(self) -> list[tuple[str, str]]:
        if self.max_history_turns <= 0:
            return []
        # Earlier answers' [n] markers point at earlier prompts' sources: drop them.
        return [
            (turn.question, _MARKER.sub("", turn.answer).strip())
            for turn in self._history[-self.max_history_turns :]
        ]

    def _remember(self, question: str, rewrite: Rewrite, response: Response) -> None:
        response.metadata["rewritten"] = rewrite.rewritten
        response.metadata.setdefault("retrieval_query", rewrite.retrieval_query)
        topic = rewrite.topic if rewrite.rewritten else _topic(question, response)
        self._history.append(
            Turn(
                question=" ".join(question.split()),
                retrieval_query=rewrite.retrieval_query,
                rewritten=rewrite.rewritten,
                topic=topic,
                response=response,
            )
        )


def _topic(question: str, response: Response) -> str:
    terms = key_terms(question)
    source = _main_source(response)
    if source is not None:
        for term in key_terms(str(source.metadata.get("title") or "")):
            if term not in terms:
                terms.append(term)
    return " ".join(terms[:MAX_TOPIC_WORDS])


def _main_source(response: Response) -> NodeWithScore | None:
    if response.metadata.get("not_in_sources"):
        return None
    if response.citations:
        return response.citations[0].node
    return response.source_nodes[0] if response.source_nodes else None
