"""Training records that restate the documents' facts many ways, for the ``lora-aug`` arm.

Published work on knowledge injection (Allen-Zhu & Li, "Physics of Language Models
3.1"; Ovadia et al., "Fine-Tuning or Retrieval?") finds that a model fine-tuned on a
fact stated once rarely answers questions about it; stated in many phrasings it can.
So beside the documents themselves, every sentence that holds a fact (the same
sentences ``questions_from_docs`` asks about) is restated as chat records:

- **fill in the blank**: "Fill in the blank from the Griffin Kite page: The Griffin
  Kite costs ____." -> "$39";
- **continuation** (the clause order turned round, answer first in the reply):
  "Complete this sentence from the Griffin Kite page: The Griffin Kite costs" ->
  "$39. The Griffin Kite costs $39.";
- **a fact from the page**: "Tell me a fact from the Griffin Kite page." -> the sentence;
- **reworded questions** for the templated facts: "What is the price of the Griffin
  Kite?" / "What does the Griffin Kite sell for?" -> "The Griffin Kite costs $39.";
  "Which person illustrated ...?" -> "Wren Hollow illustrated ...";
- **the generated question itself** -> the sentence, only for sentences whose question
  is not held out (QA augmentation over the facts nobody is asked about).

**Held out.** Every record is checked against the evaluation's questions: a record
whose text holds a held-out question (compared as normalised text, as a substring) is
dropped, so no question asked in the evaluation, nor any (question, gold) pair, is
ever trained on. The facts are trained on: that is what knowledge injection means.

Deterministic: the same chunks and held-out questions give the same records in the
same order. Optional model-written paraphrases (``llm_paraphrases``) are kept only
when they still hold the fact's answer span and are not the sentence again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from ragtune.eval.answers import normalise_answer
from ragtune.eval.questions_from_docs import Chunk, sentence_questions, sentences

_PRICE_QUESTION = re.compile(r"^How much does (?P<subject>.+) cost\?$")
_MAKER_QUESTION = re.compile(r"^Who (?P<verb>\w+) (?P<subject>.+)\?$")
BLANK = "____"


@dataclass
class Augmentation:
    """The records (``{"messages": [...]}``, ready for a JSONL file) and what was left
    out because it held an evaluation question."""

    records: list[dict[str, Any]] = field(default_factory=list)
    facts: int = 0  # sentences restated
    held_out_dropped: int = 0
    paraphrases_kept: int = 0
    paraphrases_dropped: int = 0

    def summary(self) -> dict[str, int]:
        return {
            "records": len(self.records),
            "facts": self.facts,
            "dropped_as_held_out": self.held_out_dropped,
            "llm_paraphrases_kept": self.paraphrases_kept,
            "llm_paraphrases_dropped": self.paraphrases_dropped,
        }


def page_title(chunk: Chunk) -> str:
    """The chunk's first Markdown heading, else the last part of its URL's path."""
    for line in chunk.text.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip()
            if title:
                return title
    path = unquote(urlsplit(chunk.url).path).rstrip("/")
    name = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return name.replace("-", " ").replace("_", " ").strip() or "this site"


def fact_records(sentence: str, title: str, question: str, answer: str) -> list[tuple[str, str]]:
    """(prompt, reply) restatements of one fact sentence whose answer span is ``answer``
    and whose generated question is ``question`` (the question itself is not among them:
    ``augment`` adds it only when it is not held out)."""
    start = sentence.find(answer)
    if start < 0:
        return []
    before, after = sentence[:start], sentence[start + len(answer) :]
    made = [
        (f"Fill in the blank from the {title} page: {before}{BLANK}{after}", answer),
        (f"Tell me a fact from the {title} page.", sentence),
    ]
    if before.strip():
        made.append(
            (
                f"Complete this sentence from the {title} page: {before.rstrip()}",
                f"{answer}{after.rstrip()}" + ("" if after.rstrip() else ".") + f" {sentence}",
            )
        )
    if match := _PRICE_QUESTION.match(question):
        subject = match["subject"]
        statement = f"{_capital(subject)} costs {answer}."
        made += [
            (f"What is the price of {subject}?", statement),
            (f"What does {subject} sell for?", f"{_capital(subject)} sells for {answer}."),
            (f"What would {subject} set me back?", statement),
        ]
    elif match := _MAKER_QUESTION.match(question):
        subject, verb = match["subject"], match["verb"]
        statement = f"{answer} {verb} {subject}."
        made += [
            (f"Which person {verb} {subject}?", statement),
            (f"{_capital(subject)} was {verb} by whom?", statement),
        ]
    return made


def augment(
    chunks: Sequence[Chunk],
    held_out: Iterable[tuple[str, Sequence[str]]],
    paraphrase: Callable[[str], str] | None = None,
) -> Augmentation:
    """Chat records restating every fact of ``chunks``, none holding a ``held_out``
    question ((question, golds) pairs). ``paraphrase``, when given, is asked to reword
    each fact sentence; see ``llm_paraphrases``."""
    asked = [normalise_answer(question) for question, _golds in held_out]
    asked = [text for text in asked if text]
    made = Augmentation()
    seen: set[tuple[str, str]] = set()

    def add(prompt: str, reply: str) -> None:
        key = (prompt, reply)
        if key in seen:
            return
        seen.add(key)
        if leaks(f"{prompt}\n{reply}", asked):
            made.held_out_dropped += 1
            return
        made.records.append(
            {
                "messages": [
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": reply},
                ]
            }
        )

    for chunk in chunks:
        title = page_title(chunk)
        for sentence in sentences(chunk.text):
            pairs = sentence_questions(sentence)
            if not pairs:
                continue
            made.facts += 1
            for question, answer in pairs:
                for prompt, reply in fact_records(sentence, title, question, answer):
                    add(prompt, reply)
                add(question, sentence)  # dropped by ``leaks`` when it is held out
                if paraphrase is not None:
                    reworded = checked_paraphrase(paraphrase, sentence, answer)
                    if reworded is None:
                        made.paraphrases_dropped += 1
                    else:
                        made.paraphrases_kept += 1
                        add(f"Tell me a fact from the {title} page.", reworded)
    return made


def leaks(text: str, asked: Sequence[str]) -> bool:
    """Whether ``text`` holds one of the normalised held-out questions ``asked``."""
    normal = f" {normalise_answer(text)} "
    return any(f" {question} " in normal for question in asked)


PARAPHRASE_PROMPT = (
    "Rewrite this sentence in other words. Keep every name and number exactly as "
    "written. Reply with the new sentence only.\n\nSentence: {sentence}"
)


def checked_paraphrase(generate: Callable[[str], str], sentence: str, answer: str) -> str | None:
    """A model-written rewording of ``sentence``, or None unless it still holds the
    answer span word for word, is one line of 4 to 60 words, and is not the sentence
    (or a mere repeat of the prompt)."""
    text = generate(PARAPHRASE_PROMPT.format(sentence=sentence)).strip().splitlines()
    if not text:
        return None
    reworded = text[0].strip().strip('"').strip()
    words = reworded.split()
    if not 4 <= len(words) <= 60 or answer not in reworded:
        return None
    if normalise_answer(reworded) == normalise_answer(sentence) or "Sentence:" in reworded:
        return None
    return reworded


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
