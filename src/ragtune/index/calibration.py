"""What a question-passage cosine means in one index: the corpus's own score distribution.

A raw cosine is no yardstick. The same unrelated question scores 0.12 against a
small shop and 0.45 against 11,000 pages of documentation (the more passages,
the closer the nearest one happens to be), another embedding model has another
scale, and int8 kernels move a score by up to 0.015 between CPUs. So at ingest
time the index asks itself how close questions it *cannot* answer come: each of
:data:`UNRELATED_QUESTIONS` (everyday questions about everything, written for no
particular corpus) is embedded with the index's own embedder on its own backend,
and its best cosine to any stored passage is kept. The mean and standard deviation
of those best cosines, the highest tenth left out, are the corpus's background
level and its spread; the engine's decision (``ragtune.query.abstention``) reads
a question's best cosine against them. Leaving out the highest tenth keeps a few
probes that the corpus does answer (a cooking site and the pancake question)
from setting the scale; a mean and a deviation, unlike a median or a quartile
of 100 values, barely move when a backend or a CPU reorders two close probes
(measured: 0.2144/0.0620 with onnx-int8, 0.2143/0.0612 with onnx and torch).

Calibration costs 100 short embeddings (once per process and embedder) and 100
nearest-neighbour searches per write (about a second in all with the bundled
model), and is refreshed after every insert and delete, so it follows the
corpus as it grows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ragtune.index.embedding.base import TextEmbedder
from ragtune.index.stores.base import ChunkStore

# Bump when the probes or the statistics change: a stored calibration of another
# method is ignored (and redone at the next write), never misread.
METHOD = "unrelated-questions-1"
# The share of probes, the closest ones, left out of the statistics.
TRIMMED = 0.1

UNRELATED_QUESTIONS: tuple[str, ...] = (
    "How many moons does Jupiter have?",
    "Who painted the ceiling of the Sistine Chapel?",
    "What is the boiling point of water at high altitude?",
    "How do I change a flat bicycle tyre?",
    "Which planet is closest to the Sun?",
    "What year did the Berlin Wall fall?",
    "How long should I boil an egg for a soft yolk?",
    "What is the tallest mountain in Africa?",
    "Who wrote the novel Pride and Prejudice?",
    "How do vaccines train the immune system?",
    "What is the exchange rate between the yen and the euro?",
    "How many players are on a rugby union team?",
    "What causes the northern lights?",
    "Which language has the most native speakers?",
    "How do I reset a forgotten email password?",
    "What is the difference between a virus and a bacterium?",
    "When did the first person walk on the Moon?",
    "How much caffeine is in a cup of espresso?",
    "What is the population of Brazil?",
    "Who composed the Four Seasons?",
    "How do I remove a red wine stain from a carpet?",
    "What is the speed of sound in air?",
    "Which country hosts the Tour de France?",
    "How are tornadoes formed?",
    "What is the main ingredient of guacamole?",
    "How do I file my income tax return?",
    "Who invented the telephone?",
    "What is the longest river in Asia?",
    "How many calories does running a mile burn?",
    "What does DNA stand for?",
    "How do I train a puppy to sit?",
    "Which element has the chemical symbol Fe?",
    "What is the plot of Hamlet?",
    "How often should I water a cactus?",
    "Who is the lead singer of a famous rock band?",
    "What is the average lifespan of a house cat?",
    "How do solar panels generate electricity?",
    "Which ocean is the deepest?",
    "How do I knit a scarf for beginners?",
    "What are the symptoms of the common cold?",
    "When was the printing press invented?",
    "How much does a new electric car cost?",
    "What is the rule for the offside position in football?",
    "Who discovered penicillin?",
    "How do I write a cover letter for a job application?",
    "What is the largest desert in the world?",
    "How does a mortgage interest rate work?",
    "Which bird can fly backwards?",
    "What is the recipe for pancakes?",
    "How many bones are in the adult human body?",
    "Who was the first emperor of Rome?",
    "How do I install a ceiling fan?",
    "What is the melting point of gold?",
    "Which city has the busiest airport?",
    "How do bees make honey?",
    "What time zone is New Zealand in?",
    "How do I improve my chess openings?",
    "What is the meaning of the word serendipity?",
    "Who won the Nobel Prize in Literature last year?",
    "How deep is the Mariana Trench?",
    "What is a good stretching routine after running?",
    "How do I convert Celsius to Fahrenheit?",
    "Which dinosaur had the longest neck?",
    "What is the national dish of Japan?",
    "How do I prune a rose bush?",
    "What does a cardiologist do?",
    "How many strings does a standard guitar have?",
    "Who designed the Eiffel Tower?",
    "What is inflation and why does it happen?",
    "How do I set up a home aquarium?",
    "Which animal is the fastest on land?",
    "What is the distance from the Earth to the Moon?",
    "How do I make cold brew coffee?",
    "Who was the author of the theory of relativity?",
    "What is the most popular sport in India?",
    "How do I back up photos from my phone?",
    "What are the rules of volleyball?",
    "Which volcano destroyed Pompeii?",
    "How long does it take to learn to swim?",
    "What is the chemical formula of table salt?",
    "How do I negotiate a higher salary?",
    "Which musical instrument has 88 keys?",
    "What is the currency of Switzerland?",
    "How do whales communicate?",
    "What should I pack for a week of camping?",
    "Who was the first woman to win a Nobel Prize?",
    "How do I fix a leaking kitchen tap?",
    "What language is spoken in Brazil?",
    "How does a refrigerator keep food cold?",
    "What is the oldest university in Europe?",
    "How do I grow tomatoes on a balcony?",
    "Which metal is liquid at room temperature?",
    "How many hours of sleep does a teenager need?",
    "What is the story of the Trojan horse?",
    "How do I start a podcast?",
    "Which team has won the most basketball championships?",
    "What is the weather like in Iceland in winter?",
    "How do I clean a cast iron pan?",
    "Who built the Great Pyramid of Giza?",
    "What vitamins are found in oranges?",
)


@dataclass(frozen=True)
class ScoreCalibration:
    """How close questions the index cannot answer come to its passages (cosines).

    Of the best cosine of each of ``probes`` unrelated questions, ``background``
    and ``spread`` are the mean and the standard deviation with the highest
    ``TRIMMED`` share left out; ``highest`` is the largest, kept for people
    reading ``ragtune.json``, not for decisions (one probe the corpus answers
    would set it). ``vocabulary`` names the file of the corpus's words written
    with it (``ragtune.index.vocabulary``); None for an index that has none.
    """

    probes: int
    background: float
    spread: float
    highest: float
    method: str = METHOD
    vocabulary: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> ScoreCalibration | None:
        """The calibration a manifest stored; None when there is none, or it was made
        by another method or is malformed (the caller falls back, it does not fail)."""
        if not isinstance(data, dict) or data.get("method") != METHOD:
            return None
        try:
            calibration = cls(
                probes=int(data["probes"]),
                background=float(data["background"]),
                spread=float(data["spread"]),
                highest=float(data["highest"]),
                vocabulary=data["vocabulary"] if isinstance(data.get("vocabulary"), str) else None,
            )
        except (KeyError, TypeError, ValueError):
            return None
        values = (calibration.background, calibration.spread, calibration.highest)
        if calibration.probes < 1 or not all(-1.0 <= value <= 1.0 for value in values):
            return None
        return calibration


# The probes' vectors depend only on the model and the backend: embedded once per
# process, not at every write (a sync, a test suite building many indexes).
_probe_vectors: dict[tuple[str, str], np.ndarray] = {}


def calibrate(store: ChunkStore, embedder: TextEmbedder) -> ScoreCalibration | None:
    """The score calibration of the passages in ``store``; None when it holds none."""
    if store.count() == 0:
        return None
    key = (embedder.spec, embedder.backend)
    if key not in _probe_vectors:
        _probe_vectors[key] = embedder.embed(list(UNRELATED_QUESTIONS))
    vectors = _probe_vectors[key]
    best = [hits[0].score for hits in (store.search_vector(v, 1) for v in vectors) if hits]
    if not best:
        return None
    scores = np.sort(np.asarray(best, dtype=np.float64))
    kept = scores[: max(1, round(len(scores) * (1 - TRIMMED)))]
    return ScoreCalibration(
        probes=len(best),
        background=round(float(kept.mean()), 4),
        spread=round(float(kept.std()), 4),
        highest=round(float(scores[-1]), 4),
    )
