"""Abstention: the decision rule on constructed scores, and the calibration an index keeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune import Document, VectorStoreIndex
from ragtune.index.calibration import METHOD, UNRELATED_QUESTIONS, ScoreCalibration
from ragtune.index.manifest import MANIFEST
from ragtune.query.abstention import (
    DEFAULT_MIN_SIMILARITY,
    KEYWORD_EVIDENCE,
    MIN_SPREAD,
    Thresholds,
    decide,
)
from ragtune.query.engine import NOT_IN_SOURCES

CALIBRATION = ScoreCalibration(probes=100, background=0.2, spread=0.06, highest=0.5)
# background + 0.5 and + 2.75 spreads
RELATED, SIMILAR = 0.23, 0.365

LIGHTHOUSE = [
    Document(
        text=f"# {name}\n\n{body}",
        metadata={"url": f"http://lighthouse.test/{slug}", "title": name},
    )
    for slug, name, body in [
        (
            "lamp",
            "The Fresnel lamp",
            "The keepers of Skerry Point light the Fresnel lamp at dusk. Its first-order "
            "lens was ground in Paris in 1871 and throws a beam 22 nautical miles.",
        ),
        (
            "relief",
            "Relief keepers",
            "Relief keepers arrive by supply boat every second Tuesday, weather permitting, "
            "and stay for fourteen days on the rock.",
        ),
        (
            "fog",
            "The fog signal",
            "In fog the diaphone sounds two blasts every sixty seconds; its compressor "
            "runs on paraffin and is serviced each spring.",
        ),
    ]
]


# --- the rule, on constructed scores ---------------------------------------------------


def test_thresholds_sit_a_number_of_spreads_above_the_background() -> None:
    thresholds = Thresholds.of(CALIBRATION)
    assert thresholds.related == pytest.approx(RELATED)
    assert thresholds.similar == pytest.approx(SIMILAR)
    # A corpus whose probes all land alike still gets a usable scale.
    flat = Thresholds.of(ScoreCalibration(probes=100, background=0.1, spread=0.0, highest=0.1))
    assert flat.similar - flat.related == pytest.approx(2.25 * MIN_SPREAD)


def test_calibrated_rule() -> None:
    def in_sources(best: float, evidence: float) -> bool:
        decision = decide(best, evidence, CALIBRATION)
        assert decision.rule == "calibrated"
        return decision.in_sources

    # Close enough on similarity alone, whatever the words.
    assert in_sources(SIMILAR + 0.01, 0.0)
    # Between the thresholds, only with keyword evidence.
    assert in_sources(RELATED + 0.01, KEYWORD_EVIDENCE)
    assert not in_sources(RELATED + 0.01, KEYWORD_EVIDENCE - 0.01)
    # Where unrelated questions land, not even all the words make it an answer.
    assert not in_sources(RELATED - 0.01, 1.0)
    reason = decide(RELATED - 0.01, 1.0, CALIBRATION).reason
    assert "where questions unrelated to this index land" in reason


def test_min_similarity_overrides_the_calibration() -> None:
    # An explicit threshold is the fixed rule, calibration or not.
    assert not decide(0.5, 0.0, CALIBRATION, min_similarity=0.6).in_sources
    assert decide(0.5, 0.0, None, min_similarity=0.4).rule == "fixed"
    # 0 always asks the LLM, however far the question is from the passages.
    always = decide(-0.3, 0.0, CALIBRATION, min_similarity=0.0)
    assert always.in_sources and always.rule == "always"
    # Near a fixed threshold, a literal match of two thirds of the content words answers.
    assert decide(0.58, 2 / 3, None, min_similarity=0.6).in_sources
    assert not decide(0.58, 0.5, None, min_similarity=0.6).in_sources


def test_without_a_calibration_the_fixed_default_applies_and_says_so() -> None:
    below = decide(DEFAULT_MIN_SIMILARITY - 0.1, 0.0, None)
    assert below.rule == "fixed" and not below.in_sources
    assert "no score calibration" in below.reason
    assert decide(DEFAULT_MIN_SIMILARITY + 0.1, 0.0, None).in_sources


def test_a_stored_calibration_is_read_back_or_ignored() -> None:
    assert ScoreCalibration.from_dict(CALIBRATION.to_dict()) == CALIBRATION
    assert ScoreCalibration.from_dict(None) is None
    assert ScoreCalibration.from_dict({**CALIBRATION.to_dict(), "method": "other"}) is None
    assert ScoreCalibration.from_dict({**CALIBRATION.to_dict(), "spread": "wide"}) is None
    assert ScoreCalibration.from_dict({**CALIBRATION.to_dict(), "background": 7.0}) is None
    assert ScoreCalibration.from_dict({"method": METHOD}) is None


# --- the calibration an index keeps ----------------------------------------------------


@pytest.fixture(scope="module")
def lighthouse_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("lighthouse") / "index"
    VectorStoreIndex.from_documents(LIGHTHOUSE, persist_dir=directory)
    return directory


def test_ingest_stores_the_corpus_calibration(lighthouse_dir: Path) -> None:
    stored = json.loads((lighthouse_dir / MANIFEST).read_text())["calibration"]
    assert stored["method"] == METHOD and stored["probes"] == len(UNRELATED_QUESTIONS)
    calibration = VectorStoreIndex.load(lighthouse_dir).calibration
    assert calibration is not None
    # Unrelated questions land low against three pages on a lighthouse; 90 of 100
    # probes are averaged, so the background is below the highest probe.
    assert -1.0 < calibration.background < calibration.highest <= 1.0
    assert calibration.spread > 0.0


def test_questions_about_the_pages_are_answered_and_others_not(lighthouse_dir: Path) -> None:
    engine = VectorStoreIndex.load(lighthouse_dir).as_query_engine()
    for question in (
        "When do relief keepers arrive at the lighthouse?",
        "How far does the Fresnel lamp's beam reach?",
        "How often does the diaphone sound in fog?",
    ):
        _, response = engine.stream(question)  # decided before any token is generated
        assert response.metadata["abstention_rule"] == "calibrated"
        assert not response.metadata.get("not_in_sources"), (question, response.metadata)
    for question in ("Who won the 1998 World Cup?", "How do I bake sourdough bread?"):
        tokens, response = engine.stream(question)
        assert response.metadata["not_in_sources"] is True, (question, response.metadata)
        assert "".join(tokens) == NOT_IN_SOURCES


def test_an_index_without_calibration_falls_back_and_ingest_adds_one(
    lighthouse_dir: Path, tmp_path: Path
) -> None:
    # An index built before calibration existed: its manifest has no such key.
    old = tmp_path / "old"
    VectorStoreIndex.from_documents(LIGHTHOUSE, persist_dir=old)
    manifest = json.loads((old / MANIFEST).read_text())
    del manifest["calibration"]
    (old / MANIFEST).write_text(json.dumps(manifest))
    index = VectorStoreIndex.load(old)
    assert index.calibration is None
    response = index.as_query_engine().query("Who won the 1998 World Cup?")
    assert response.metadata["abstention_rule"] == "fixed"
    assert "no score calibration" in response.metadata["reason"]
    # Ingesting the same documents again changes no chunk, yet calibrates the index.
    assert VectorStoreIndex.from_documents(LIGHTHOUSE, persist_dir=old).last_insert.chunks == 0
    assert VectorStoreIndex.load(old).calibration is not None


def test_deleting_documents_recalibrates(tmp_path: Path) -> None:
    index = VectorStoreIndex.from_documents(LIGHTHOUSE, persist_dir=tmp_path / "index")
    before = index.calibration
    # Documents are deleted by id (a hash of the URL), not by the URL itself.
    assert index.delete_documents([LIGHTHOUSE[0].doc_id, LIGHTHOUSE[2].doc_id]) == 2
    after = VectorStoreIndex.load(tmp_path / "index").calibration
    assert before is not None and after is not None
    # Against one page instead of three, no probe gets closer than it was.
    assert after.highest <= before.highest
    assert after.background <= before.background
