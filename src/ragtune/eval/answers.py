"""Answer quality: is the answer right, grounded, cited honestly, and does the engine
abstain when the index cannot answer?

Every question is asked of a query engine and its ``Response`` is scored:

- **exact match** and **token F1**: SQuAD's official measures, on answers normalised
  as SQuAD's script does (lower case, ASCII punctuation and the articles a/an/the
  removed, white space collapsed), best over the gold answers.
- **contains**: a normalised gold answer appears in the normalised answer as whole
  words ("four" is not found in "fourteen"). A small model answers in sentences,
  never in SQuAD's short spans, so this is the reading that says whether it knew.
- **faithfulness**: of all answer sentences the engine checked against its sources
  (``Response.sentences``), the share marked supported. Answers the engine did not
  check (grounding off) are left out; with none checked it is None. Strict grounding
  removes unsupported sentences before the answer is shown, so their count is kept
  beside it (``dropped_sentences``, from ``metadata["unsupported_dropped"]``).
- **citation precision**: of the sources an answer points to (``Response.citations``
  and the sources of its sentences), the share whose text contains a gold answer.
- **abstention accuracy**: of the questions the index cannot answer, the share the
  engine declined (``metadata["not_in_sources"]``); **false abstention rate**: of
  the answerable ones, the share it declined.
- **latency** p50/p95 of the whole ``query`` call, in seconds, over every question.

Correctness (EM, F1, contains) and citations are scored on answerable questions only;
an answerable question the engine declined scores 0 on all three. Unanswerable
questions come from articles the index does not hold (``squad.split_by_article``):
asking a question whose paragraph was never indexed is the honest way to get them.
"""

from __future__ import annotations

import re
import statistics
import string
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from ragtune.documents import Response
from ragtune.eval.report import markdown_table
from ragtune.eval.retrieval import percentile
from ragtune.eval.squad import Question

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


class AnswerEngine(Protocol):
    """What is evaluated: ``index.as_query_engine(...)`` or anything answering alike."""

    def query(self, question: str) -> Response: ...


def normalise_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no ASCII punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(answer: str, golds: Sequence[str]) -> bool:
    """The normalised answer equals a normalised gold answer."""
    normalised = normalise_answer(answer)
    return any(normalised == normalise_answer(gold) for gold in golds)


def token_f1(answer: str, golds: Sequence[str]) -> float:
    """SQuAD's token F1 between the answer and its best-matching gold answer."""
    predicted = normalise_answer(answer).split()
    best = 0.0
    for gold in golds:
        expected = normalise_answer(gold).split()
        overlap = sum((Counter(predicted) & Counter(expected)).values())
        if overlap:
            precision, recall = overlap / len(predicted), overlap / len(expected)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def contains_answer(text: str, golds: Sequence[str]) -> bool:
    """A gold answer appears in ``text`` as whole words, both normalised."""
    padded = f" {normalise_answer(text)} "
    return any(f" {gold} " in padded for gold in (normalise_answer(g) for g in golds) if gold)


def cited_sources(response: Response) -> list[int]:
    """The prompt source numbers the answer points to, first mention first: its
    ``[n]`` citations, then the sources the grounding attributed its sentences to."""
    numbers = [citation.number for citation in response.citations]
    numbers += [number for sentence in response.sentences for number in sentence.sources]
    return list(dict.fromkeys(numbers))


def abstained(response: Response) -> bool:
    """The engine declined: it said the sources do not hold the answer."""
    return bool(response.metadata.get("not_in_sources"))


@dataclass(frozen=True)
class AnswerRecord:
    """One question, the engine's answer, and how it scored."""

    id: str
    question: str
    answerable: bool
    golds: tuple[str, ...]
    answer: str
    abstained: bool
    exact_match: bool
    f1: float
    contains: bool
    # Sentences the engine checked against its sources, and how many it found supported.
    sentences: int
    supported_sentences: int
    # Generated sentences strict grounding removed as unsupported.
    dropped_sentences: int
    # Sources the answer points to, and how many of them hold a gold answer.
    cited: int
    cited_with_answer: int
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def score_response(
    question: Question, response: Response, answerable: bool, seconds: float
) -> AnswerRecord:
    """Score one response; a declined answerable question scores 0 on correctness."""
    declined = abstained(response)
    scored = "" if declined or not answerable else response.response
    numbers = cited_sources(response) if answerable and not declined else []
    texts = [
        response.source_nodes[n - 1].text for n in numbers if 0 < n <= len(response.source_nodes)
    ]
    return AnswerRecord(
        id=question.id,
        question=question.question,
        answerable=answerable,
        golds=question.answers,
        answer=response.response,
        abstained=declined,
        exact_match=bool(scored) and exact_match(scored, question.answers),
        f1=token_f1(scored, question.answers) if scored else 0.0,
        contains=bool(scored) and contains_answer(scored, question.answers),
        sentences=0 if declined else len(response.sentences),
        supported_sentences=0 if declined else sum(s.supported for s in response.sentences),
        dropped_sentences=int(response.metadata.get("unsupported_dropped", 0)),
        cited=len(texts),
        cited_with_answer=sum(contains_answer(text, question.answers) for text in texts),
        seconds=seconds,
    )


@dataclass(frozen=True)
class AnswerScores:
    """The measures over a run; None where no question could be scored on it."""

    label: str
    answerable: int
    unanswerable: int
    exact_match: float | None
    f1: float | None
    contains: float | None
    faithfulness: float | None
    checked_answers: int
    dropped_sentences: int
    citation_precision: float | None
    abstention_accuracy: float | None
    false_abstention_rate: float | None
    latency_p50_s: float
    latency_p95_s: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def summarise(records: Sequence[AnswerRecord], label: str = "") -> AnswerScores:
    """The run's measures from its records (see the module docstring for each)."""
    if not records:
        raise ValueError("no answers to summarise")
    answerable = [r for r in records if r.answerable]
    unanswerable = [r for r in records if not r.answerable]
    checked = [r for r in records if r.sentences]
    seconds = [r.seconds for r in records]
    return AnswerScores(
        label=label,
        answerable=len(answerable),
        unanswerable=len(unanswerable),
        exact_match=_mean(r.exact_match for r in answerable),
        f1=_mean(r.f1 for r in answerable),
        contains=_mean(r.contains for r in answerable),
        faithfulness=_ratio(
            sum(r.supported_sentences for r in checked), sum(r.sentences for r in checked)
        ),
        checked_answers=len(checked),
        dropped_sentences=sum(r.dropped_sentences for r in records),
        citation_precision=_ratio(
            sum(r.cited_with_answer for r in answerable), sum(r.cited for r in answerable)
        ),
        abstention_accuracy=_mean(r.abstained for r in unanswerable),
        false_abstention_rate=_mean(r.abstained for r in answerable),
        latency_p50_s=statistics.median(seconds),
        latency_p95_s=percentile(seconds, 95),
    )


@dataclass(frozen=True)
class AnswerEvaluation:
    records: list[AnswerRecord]
    scores: AnswerScores

    def to_dict(self) -> dict[str, object]:
        return {
            "scores": self.scores.to_dict(),
            "answers": [record.to_dict() for record in self.records],
        }


def evaluate_answers(
    engine: AnswerEngine,
    answerable: Sequence[Question],
    unanswerable: Sequence[Question] = (),
    progress: Callable[[int, int], None] | None = None,
    label: str = "",
) -> AnswerEvaluation:
    """Ask every question of ``engine`` (answerable ones first) and score the answers."""
    asked = [(q, True) for q in answerable] + [(q, False) for q in unanswerable]
    if not asked:
        raise ValueError("no questions to ask")
    records: list[AnswerRecord] = []
    for number, (question, can_answer) in enumerate(asked, start=1):
        started = time.perf_counter()
        response = engine.query(question.question)
        seconds = time.perf_counter() - started
        records.append(score_response(question, response, can_answer, seconds))
        if progress:
            progress(number, len(asked))
    return AnswerEvaluation(records, summarise(records, label))


# The summary's columns: a heading and how each AnswerScores value is shown.
COLUMNS: tuple[tuple[str, Callable[[AnswerScores], str]], ...] = (
    ("answerable", lambda s: str(s.answerable)),
    ("EM", lambda s: _share(s.exact_match)),
    ("F1", lambda s: _share(s.f1)),
    ("contains", lambda s: _share(s.contains)),
    ("faithfulness", lambda s: _share(s.faithfulness)),
    ("dropped sentences", lambda s: str(s.dropped_sentences)),
    ("citation precision", lambda s: _share(s.citation_precision)),
    ("unanswerable", lambda s: str(s.unanswerable)),
    ("abstention", lambda s: _share(s.abstention_accuracy)),
    ("false abstention", lambda s: _share(s.false_abstention_rate)),
    ("p50 s", lambda s: f"{s.latency_p50_s:.2f}"),
    ("p95 s", lambda s: f"{s.latency_p95_s:.2f}"),
)


def scores_table(runs: Iterable[AnswerScores]) -> str:
    """A Markdown table, one row per run (its label first); "n/a" where a measure had
    nothing to score."""
    rows = [[s.label, *(show(s) for _, show in COLUMNS)] for s in runs]
    return markdown_table(["run", *(name for name, _ in COLUMNS)], rows)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _mean(values: Iterable[bool | float]) -> float | None:
    items = [float(value) for value in values]
    return sum(items) / len(items) if items else None


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None
