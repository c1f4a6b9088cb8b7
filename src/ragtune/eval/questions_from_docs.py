"""Held-out questions made from an index's own chunks, each answered by a span of one chunk.

A sentence becomes a question when it holds a fact a reader could be asked for:

- **templated**: "The Griffin Kite costs $39." gives "How much does the Griffin Kite
  cost?" (gold "$39"); "X is made/written/designed/... by Y" gives "Who made X?";
- **cloze**: any other sentence with a number (with the word after it when that is a
  unit) or a capitalised name that does not open the sentence is asked with the span
  replaced by a question word: "The hourglass runs for exactly 25 minutes." gives "The
  hourglass runs for exactly how many minutes?" (gold "25 minutes"); "The Dark Energy
  Potion is a red energy drink." gives "What is a red energy drink?". (A literal
  blank, "___", makes retrieval and the abstention check fail: measured on the demo
  shop, every blanked question was declined.)

Each question keeps its gold span, the chunk it came from (its ``context``), the
chunk's URL (``title``) and the chunk id (``id`` is ``URL#chunkN:qK``), so the set is
written as SQuAD JSON (``squad.squad_json``) that ``ragtune eval answers --qa`` reads.

**Model-written** (``llm_questions``, optional): the LLM is shown a fact sentence and
its answer span and asked for a question; the question is kept only if it passes
every check: it is one line ending in "?" of 4 to 40 words, the gold span is not in it,
it is no repeat of a question already made, and retrieval over the index finds its
source chunk in the top k. Candidates are the facts the templated questions did not
take. A small model (the bundled SmolLM2-135M) fails most checks; how many were kept
and why the others were dropped is reported.

**Unanswerable** questions ask the same templates about products that are not in the
index: names from a fixed list, kept only when none of their words occurs anywhere in
the corpus.

**What is held out.** Knowledge injection must see the facts, so the training text of
a fine-tuned arm is the documents themselves, facts included. What never enters any
training set is the *questions*: the question strings and question/answer pairs made
here are used only to evaluate. An arm that augments its training data with
generated questions must leave out every question made here.

Deterministic: the same chunks and seed give the same questions in the same order.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ragtune.eval.answers import normalise_answer
from ragtune.eval.squad import Question

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_NAME = r"(?:[A-Z][\w'’-]*)(?:\s+(?:of\s+|the\s+)?[A-Z][\w'’-]*)*"
_SUBJECT = rf"(?P<subject>(?:[Tt]he\s+|[Oo]ur\s+)?{_NAME})"
_PRICE = re.compile(
    rf"^{_SUBJECT}\s+(?:costs|is priced at|sells for|retails for)\s+"
    r"(?P<answer>(?:[$€£]\s?\d[\d,]*(?:\.\d+)?|\d[\d,]*(?:\.\d+)?\s?(?:dollars|euros|USD|EUR)))"
)
# A product listing's line: "Griffin Kite $29.50 A giant griffin-shaped kite..."
_LISTING = re.compile(rf"^(?P<subject>{_NAME})\s+(?P<answer>[$€£]\d[\d,]*(?:\.\d+)?)(?=\s|$)")
_MAKER = re.compile(
    rf"^{_SUBJECT}\s+(?:is|was)\s+(?P<verb>made|written|designed|illustrated|built|"
    r"crafted|invented|founded|brewed|sewn|carved|forged)\s+(?:by\s+hand\s+)?by\s+"
    rf"(?P<answer>{_NAME})"
)
_NUMBER = re.compile(
    r"(?<![\w.$€£])(?P<answer>[$€£]?\d[\d,]*(?:\.\d+)?(?:\s?%|\s+[a-zA-Z]{1,14})?)"
)
_INNER_NAME = re.compile(rf"(?<=\s)(?P<answer>{_NAME})")
# The words after a number that are its unit; any other word is left out of the span.
_UNITS = frozenset(
    [
        "mg",
        "g",
        "grams",
        "gram",
        "kg",
        "kilograms",
        "kilogram",
        "ml",
        "l",
        "litres",
        "litre",
        "liters",
        "liter",
        "cl",
        "oz",
        "pounds",
        "lb",
        "mm",
        "cm",
        "m",
        "km",
        "centimetres",
        "centimetre",
        "metres",
        "metre",
        "meters",
        "meter",
        "inches",
        "inch",
        "feet",
        "foot",
        "seconds",
        "second",
        "minutes",
        "minute",
        "hours",
        "hour",
        "days",
        "day",
        "weeks",
        "week",
        "months",
        "month",
        "years",
        "year",
        "percent",
        "degrees",
        "servings",
        "pages",
        "players",
        "carats",
        "pieces",
        "watts",
        "volts",
        "calories",
        "dollars",
        "euros",
    ]
)
_MIN_WORDS, _MAX_WORDS = 4, 40
_VAGUE_OPENINGS = frozenset(
    ["it", "its", "they", "their", "them", "this", "these", "those", "each", "he", "she", "a", "an"]
)
# Product-like names for unanswerable questions; a name is used only when none of
# its words appears in the corpus.
_ABSENT_NAMES = (
    "Zephyr Lantern",
    "Obsidian Compass",
    "Quasar Teapot",
    "Nimbus Umbrella",
    "Halcyon Fountain Pen",
    "Vortex Kaleidoscope",
    "Juniper Music Box",
    "Tundra Snow Globe",
    "Marigold Sundial",
    "Cobalt Pocket Watch",
    "Saffron Spice Grinder",
    "Willowisp Night Light",
)
_ABSENT_TEMPLATES = (
    "How much does the {name} cost?",
    "Who made the {name}?",
    "How heavy is the {name}?",
    "What colour is the {name}?",
)


@dataclass(frozen=True)
class Chunk:
    """One indexed passage: where it came from and its text."""

    url: str
    number: int
    text: str

    @property
    def id(self) -> str:
        return f"{self.url}#chunk{self.number}"


def sentences(text: str) -> list[str]:
    """``text`` split into sentences at ., ! or ? followed by a capital or digit, and at
    line breaks (Markdown lists and headings end a sentence too)."""
    pieces: list[str] = []
    for line in text.splitlines():
        if "|" in line:  # a table row is not a sentence
            continue
        line = re.sub(r"^\s*(?:[#>*+-]+|\d+[.)])\s+", "", line).strip()
        pieces += [piece.strip() for piece in _SENTENCE_END.split(line) if piece.strip()]
    return pieces


def sentence_questions(sentence: str) -> list[tuple[str, str]]:
    """The ``(question, gold answer)`` pairs one sentence gives, best first: a templated
    question when a template fits, else a cloze on its first number, else on its first
    name past the first word. The gold answer is always a span of ``sentence``."""
    words = sentence.split()
    if not _MIN_WORDS <= len(words) <= _MAX_WORDS or not words[0][0].isalpha():
        return []
    if words[0].lower() in _VAGUE_OPENINGS:
        return []  # "It stands 20 cm tall": asked alone, nobody could know what "it" is
    if match := _PRICE.match(sentence):
        return [(f"How much does {_lower_article(match['subject'])} cost?", match["answer"])]
    if match := _LISTING.match(sentence):
        subject = match["subject"]
        subject = subject if subject.startswith(("The ", "Our ")) else f"the {subject}"
        return [(f"How much does {_lower_article(subject)} cost?", match["answer"])]
    if match := _MAKER.match(sentence):
        subject = _lower_article(match["subject"])
        return [(f"Who {match['verb']} {subject}?", match["answer"])]
    for pattern in (_NUMBER, _INNER_NAME):
        for match in pattern.finditer(sentence):
            answer = _trim_unit(match["answer"]) if pattern is _NUMBER else match["answer"]
            start, end = match.start("answer"), match.start("answer") + len(answer)
            before = sentence[:start].split()
            if pattern is _INNER_NAME and (
                not _opens_name(before) or len(answer) < 3 or answer.startswith("The ")
            ):
                continue
            glued = sentence[end : end + 1]
            if glued in ("-", "/") or glued.isalnum() or sentence[start - 1 : start] in ("-", "/"):
                continue  # "240-page": the scorer would never find "240" as a word
            question = _wh_question(sentence, start, end, answer, pattern is _NUMBER)
            if len(normalise_answer(question).split()) < 4:
                continue
            return [(question, answer)]
    return []


def _wh_question(sentence: str, start: int, end: int, answer: str, number: bool) -> str:
    """The sentence asked as a question: its answer span replaced by a question word
    ("weighs only 410 grams" gives "weighs only how many grams"), "?" at the end."""
    if number:
        unit = answer.split(" ", 1)[1] if " " in answer else ""
        if answer[:1] in "$€£" or answer.rstrip().endswith("%"):
            asked = "how much"
        else:
            asked = f"how many {unit}".rstrip()
    else:
        asked = "what"
    head, tail = sentence[:start], sentence[end:]
    if head in ("The ", "A ", "An "):
        head, asked = "", asked.capitalize()
    return f"{head}{asked}{tail}".rstrip(" .!:;") + "?"


def questions_from_chunks(
    chunks: Sequence[Chunk], limit: int | None = None, seed: int = 0
) -> list[Question]:
    """Up to ``limit`` answerable questions from ``chunks``, deduplicated by question and
    by answer-in-sentence, spread over the chunks (one from each in turn), in an order
    drawn with ``seed``."""
    per_chunk: list[list[Question]] = []
    seen_questions: set[str] = set()
    seen_facts: set[tuple[str, str]] = set()
    for chunk in chunks:
        made: list[Question] = []
        for sentence in sentences(chunk.text):
            for question, answer in sentence_questions(sentence):
                key = normalise_answer(question)
                fact = (normalise_answer(answer), normalise_answer(sentence))
                if key in seen_questions or fact in seen_facts:
                    continue
                seen_questions.add(key)
                seen_facts.add(fact)
                made.append(
                    Question(
                        id=f"{chunk.id}:q{len(made)}",
                        question=question,
                        answers=(answer,),
                        context=chunk.text,
                        title=chunk.url,
                    )
                )
        if made:
            per_chunk.append(made)
    rng = random.Random(seed)
    rng.shuffle(per_chunk)
    for made in per_chunk:
        rng.shuffle(made)
    chosen: list[Question] = []
    while per_chunk and (limit is None or len(chosen) < limit):
        per_chunk = [made for made in per_chunk if made]
        for made in per_chunk:
            if limit is not None and len(chosen) >= limit:
                break
            chosen.append(made.pop(0))
    return chosen


# One worked example first: a model that writes prose around its question still shows
# the shape wanted. The example's facts are the unanswerable list's kind (not the corpus).
QUESTION_PROMPT = (
    "Write a question for the sentence; the answer to the question is given.\n\n"
    "Sentence: The Blue Teapot holds 2 litres of tea.\nAnswer: 2 litres\n"
    "Question: How much tea does the Blue Teapot hold?\n\n"
    "Sentence: {sentence}\nAnswer: {answer}\nQuestion:"
)
QUESTION_TOKENS = 40


@dataclass
class WrittenQuestions:
    """The model-written questions kept, and what the checks dropped (by reason)."""

    questions: list[Question] = field(default_factory=list)
    tried: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def stats(self) -> dict[str, object]:
        return {
            "tried": self.tried,
            "kept": len(self.questions),
            "dropped": dict(self.dropped),
            "seconds": self.seconds,
        }


def llm_questions(
    chunks: Sequence[Chunk],
    generate: Callable[[str], str],
    finds_source: Callable[[str, Chunk], bool],
    existing: Sequence[Question],
    tries: int,
    seed: int = 0,
) -> WrittenQuestions:
    """Up to ``tries`` model-written questions (``generate`` takes a prompt, returns the
    reply), each about a fact sentence no question in ``existing`` asks about, kept only
    when it passes the checks (module docstring); ``finds_source(question, chunk)`` says
    whether retrieval finds the question's source chunk."""
    taken = {_fact_key(q.answers[0], s) for q in existing for s in sentences(q.context)}
    taken = {key for key in taken if key[0] in key[1]}
    asked = {normalise_answer(q.question) for q in existing}
    candidates = [
        (chunk, sentence, answer)
        for chunk in chunks
        for sentence in sentences(chunk.text)
        for _question, answer in sentence_questions(sentence)
        if _fact_key(answer, sentence) not in taken
    ]
    random.Random(seed).shuffle(candidates)
    made = WrittenQuestions()
    began = time.perf_counter()
    for chunk, sentence, answer in candidates[:tries]:
        made.tried += 1
        reply = generate(QUESTION_PROMPT.format(answer=answer, sentence=sentence))
        question = written_question(reply)
        reason = _question_problem(question, answer, asked)
        if reason is None and not finds_source(question, chunk):
            reason = "source chunk not retrieved"
        if reason is not None:
            made.dropped[reason] = made.dropped.get(reason, 0) + 1
            continue
        asked.add(normalise_answer(question))
        made.questions.append(
            Question(
                id=f"{chunk.id}:llm{len(made.questions)}",
                question=question,
                answers=(answer,),
                context=chunk.text,
                title=chunk.url,
            )
        )
    made.seconds = time.perf_counter() - began
    return made


def written_question(reply: str) -> str:
    """The question in a model's reply: its first line, less a "Question:" label, up to
    and with its first "?" (a model may go on to explain)."""
    line = (reply.strip().splitlines() or [""])[0].strip()
    line = re.sub(r"^question\s*:\s*", "", line, flags=re.IGNORECASE).strip().strip('"')
    mark = line.find("?")
    return line[: mark + 1].strip() if mark >= 0 else line


def _question_problem(question: str, answer: str, asked: set[str]) -> str | None:
    words = question.split()
    if not question.endswith("?") or not _MIN_WORDS <= len(words) <= _MAX_WORDS:
        return "not a question"
    normal = f" {normalise_answer(question)} "
    if f" {normalise_answer(answer)} " in normal:
        return "answer in the question"
    if normalise_answer(question) in asked:
        return "duplicate"
    return None


def _fact_key(answer: str, sentence: str) -> tuple[str, str]:
    return normalise_answer(answer), normalise_answer(sentence)


def unanswerable_questions(chunks: Iterable[Chunk], count: int, seed: int = 0) -> list[Question]:
    """``count`` questions about products the corpus never names (none of the name's
    words occur in it); fewer when the fixed list runs out."""
    vocabulary = {word for chunk in chunks for word in normalise_answer(chunk.text).split()}
    names = [
        name
        for name in _ABSENT_NAMES
        if not any(word in vocabulary for word in normalise_answer(name).split())
    ]
    rng = random.Random(seed)
    rng.shuffle(names)
    made: list[Question] = []
    for number, name in enumerate(names[:count]):
        template = _ABSENT_TEMPLATES[number % len(_ABSENT_TEMPLATES)]
        made.append(
            Question(
                id=f"absent:{number}",
                question=template.format(name=name),
                answers=("(not in the documents)",),
                context=f"The {name} is not described in these documents.",
                title="absent",
            )
        )
    return made


def _opens_name(before: list[str]) -> bool:
    """A name starts here: after a lower-case word or an opening article, not in the
    middle of a longer capitalised name."""
    return bool(before) and (before[-1][0].islower() or before == ["The"] or before == ["A"])


def _lower_article(subject: str) -> str:
    first, _, rest = subject.partition(" ")
    return f"{first.lower()} {rest}" if first in ("The", "Our") and rest else subject


def _trim_unit(answer: str) -> str:
    number, _, unit = answer.partition(" ")
    return answer.rstrip() if not unit or unit.lower() in _UNITS else number
