"""SQuAD v1.1-format question files, validated with errors that name the file and the place."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.documents import Document
from ragtune.errors import QAFormatError

MAX_QA_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    context: str
    title: str


def load_squad(path: Path) -> list[Question]:
    if not path.is_file():
        raise QAFormatError(f"{path}: no such file")
    if path.stat().st_size > MAX_QA_BYTES:
        raise QAFormatError(f"{path}: over the {MAX_QA_BYTES}-byte limit")
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as error:
        raise QAFormatError(f"{path}: not JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise QAFormatError(f'{path}: expected SQuAD JSON with a top-level "data" list')
    questions: list[Question] = []
    for a, article in enumerate(data["data"]):
        where = f"{path}: data[{a}]"
        paragraphs = _field(article, "paragraphs", list, where)
        title = str(article.get("title", "")) if isinstance(article, dict) else ""
        for p, paragraph in enumerate(paragraphs):
            here = f"{where}.paragraphs[{p}]"
            context = _field(paragraph, "context", str, here)
            for q, qa in enumerate(_field(paragraph, "qas", list, here)):
                spot = f"{here}.qas[{q}]"
                answers = _field(qa, "answers", list, spot)
                texts = tuple(
                    str(_field(answer, "text", str, f"{spot}.answers")) for answer in answers
                )
                if not texts:
                    raise QAFormatError(f"{spot}: the question has no answers")
                questions.append(
                    Question(
                        id=str(qa.get("id", f"{a}.{p}.{q}")),
                        question=_field(qa, "question", str, spot),
                        answers=texts,
                        context=context,
                        title=title,
                    )
                )
    if not questions:
        raise QAFormatError(f"{path}: the file holds no questions")
    return questions


def _field(container: Any, name: str, kind: type, where: str) -> Any:
    if not isinstance(container, dict) or name not in container:
        raise QAFormatError(f'{where}: missing "{name}"')
    value = container[name]
    if not isinstance(value, kind):
        raise QAFormatError(f"{where}.{name}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def context_documents(questions: list[Question]) -> list[Document]:
    """Each distinct paragraph once, as a Document to index for a retrieval evaluation."""
    documents: dict[str, Document] = {}
    for question in questions:
        if question.context not in documents:
            number = len(documents)
            documents[question.context] = Document(
                text=question.context,
                metadata={"url": f"squad:{number}", "title": question.title},
            )
    return list(documents.values())


def split_by_article(
    questions: list[Question], held_out: int, seed: int = 0
) -> tuple[list[Question], list[Question]]:
    """Split questions into ``(kept, held_out)`` by whole articles (their ``title``).

    ``held_out`` articles, drawn with ``seed``, go to the second list. Index only
    the kept questions' paragraphs and the held-out questions become honestly
    unanswerable: their article, and so their answer's paragraph, is not in the
    index. A paragraph is never split across the two lists, so no held-out answer
    can leak in through a shared paragraph. Raises QAFormatError unless at least
    one article is left on each side.
    """
    titles = list(dict.fromkeys(question.title for question in questions))
    if not 0 < held_out < len(titles):
        raise QAFormatError(
            f"cannot hold out {held_out} of {len(titles)} articles: "
            "both sides need at least one article"
        )
    chosen = set(random.Random(seed).sample(titles, held_out))
    kept = [question for question in questions if question.title not in chosen]
    held = [question for question in questions if question.title in chosen]
    return kept, held


def squad_json(questions: list[Question]) -> dict[str, Any]:
    """``questions`` as SQuAD v1.1 JSON (articles by title, paragraphs by context),
    which ``load_squad`` reads back into the same questions."""
    articles: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for question in questions:
        paragraphs = articles.setdefault(question.title, {})
        paragraphs.setdefault(question.context, []).append(
            {
                "id": question.id,
                "question": question.question,
                "answers": [
                    {"text": answer, "answer_start": question.context.find(answer)}
                    for answer in question.answers
                ],
            }
        )
    return {
        "version": "1.1",
        "data": [
            {
                "title": title,
                "paragraphs": [
                    {"context": context, "qas": qas} for context, qas in paragraphs.items()
                ],
            }
            for title, paragraphs in articles.items()
        ],
    }
