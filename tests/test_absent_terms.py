"""Absent names: a question naming something no passage of the index mentions is not
in the sources, whatever its cosine. The vocabulary an index keeps, and the rule."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from tests.test_abstention import LIGHTHOUSE

from ragtune import VectorStoreIndex
from ragtune.index.calibration import ScoreCalibration
from ragtune.index.manifest import MANIFEST
from ragtune.index.vocabulary import CorpusVocabulary, load_vocabulary, save_vocabulary
from ragtune.query.abstention import absent_terms, decide, distinctive_terms

CALIBRATION = ScoreCalibration(probes=100, background=0.2, spread=0.06, highest=0.5)

# --- the vocabulary ---------------------------------------------------------------------


def test_vocabulary_holds_every_word_and_the_parts_of_compounds() -> None:
    vocabulary = CorpusVocabulary.of_texts(
        ["Set `max_wal_size` in pg_hba.conf.", "The Normans' castle, built in 1066."]
    )
    for word in ("max_wal_size", "max", "wal", "size", "pg_hba", "conf", "normans", "1066"):
        assert word in vocabulary, word
    for word in ("shared_buffers", "norman", "castles", "", "MAX"):  # lookups are normalised
        assert word not in vocabulary, word
    assert 3 not in vocabulary  # not a word at all


def test_vocabulary_survives_a_round_trip_and_refuses_a_damaged_file(tmp_path: Path) -> None:
    vocabulary = CorpusVocabulary.of_texts(["alpha beta gamma"])
    name = save_vocabulary(vocabulary, tmp_path)
    loaded = load_vocabulary(tmp_path, name)
    assert loaded is not None and len(loaded) == 3 and "beta" in loaded
    # Not what its name says (a byte changed): ignored, not misread.
    data = bytearray((tmp_path / name).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / name).write_bytes(bytes(data))
    assert load_vocabulary(tmp_path, name) is None
    # A name that is no vocabulary file's, or points outside the directory.
    for hostile in ("../ragtune.json", "vocabulary-zz.npy", None, 7, "vocabulary-0.npy"):
        assert load_vocabulary(tmp_path, hostile) is None
    assert load_vocabulary(tmp_path, "vocabulary-0123456789abcdef.npy") is None  # missing


def test_a_vocabulary_file_holding_pickled_objects_is_never_loaded(tmp_path: Path) -> None:
    import hashlib

    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    data = buffer.getvalue()
    name = f"vocabulary-{hashlib.sha256(data).hexdigest()[:16]}.npy"
    (tmp_path / name).write_bytes(data)
    assert load_vocabulary(tmp_path, name) is None


# --- the rule, on constructed questions --------------------------------------------------


@pytest.mark.parametrize(
    ("question", "terms"),
    [
        ("What is the default value of shared_buffers?", ["shared_buffers"]),
        ("How is a log sequence number (LSN) represented?", ["lsn"]),
        ("What does `pg_cron` do?", ["pg_cron"]),
        ('What is "serendipity"?', ["serendipity"]),
        ("What did the Normans build in Sicily?", ["normans", "sicily"]),
        ("Which customer walked across hot coals at a festival?", []),  # common words only
        ("Who won in 1998?", []),  # a bare number is no name
        ("What does getElementById return?", ["getelementbyid"]),
        ("Who was a 15th-century reformer in the 1990s?", []),  # numbers with suffixes
        ("When did the UMC vote?", ["umc"]),
    ],
)
def test_distinctive_terms_are_names_and_identifiers(question: str, terms: list[str]) -> None:
    assert [term.text for term in distinctive_terms(question)] == terms


def test_identifiers_must_be_exact_and_names_are_forgiven() -> None:
    kinds = {term.text: term.exact for term in distinctive_terms("Does `Norman` set max_wal_size?")}
    assert kinds == {"norman": False, "max_wal_size": True}


def test_absent_terms_are_the_distinctive_ones_no_passage_holds() -> None:
    vocabulary = CorpusVocabulary.of_texts(["The Norman conquest of Sicily; work_mem is 4MB."])
    assert absent_terms("What did the Normans build in Sicily?", vocabulary) == []  # plural
    assert absent_terms("What is the default of work_mem?", vocabulary) == []
    assert absent_terms("What is the default of shared_buffers?", vocabulary) == ["shared_buffers"]
    assert absent_terms("What is the default of work_mam?", vocabulary) == ["work_mam"]
    assert absent_terms("What is the default of shared_buffers?", None) == []


@pytest.mark.parametrize(
    ("question", "corpus_says"),
    [
        ("How many paintings did John Sheeshanks give?", "John Sheepshanks gave 233 paintings."),
        ("What was Ghandi's work called?", "Gandhi called it satyagraha."),
        ("When was the Maastrich Treaty signed?", "The Maastricht Treaty was signed in 1992."),
        ("What role does Thomas de Maiziere serve?", "Thomas de Maizière is the minister."),
        ("Southern Californian communities are what?", "Southern California is sprawling."),
        ("When did the UMC call for abstinence?", "The United Methodist Church called for it."),
        ("Who sang at Superbowl 50?", "At Super Bowl 50 Lady Gaga sang."),
        ("Who was a Huguenot-descended manufacturer?", "Huguenot families descended from..."),
    ],
)
def test_names_are_found_as_people_misspell_and_derive_them(
    question: str, corpus_says: str
) -> None:
    assert absent_terms(question, CorpusVocabulary.of_texts([corpus_says])) == []


def test_a_different_name_is_still_absent() -> None:
    vocabulary = CorpusVocabulary.of_texts(["John Sheepshanks gave 233 paintings to the museum."])
    assert absent_terms("How many paintings did John Constable give?", vocabulary) == ["constable"]
    assert absent_terms("What did the IMF lend?", vocabulary) == ["imf"]


def test_an_absent_name_decides_whatever_the_cosine() -> None:
    decision = decide(0.95, 1.0, CALIBRATION, absent=["shared_buffers"])
    assert not decision.in_sources and decision.rule == "calibrated"
    assert (
        decision.reason == "the question names 'shared_buffers', which occurs nowhere in the index"
    )
    assert not decide(0.95, 1.0, None, 0.22, absent=["a_b", "c_d"]).in_sources
    # min_similarity 0 still always asks the LLM; no absent name leaves the cosine rule.
    assert decide(0.95, 1.0, None, 0.0, absent=["shared_buffers"]).in_sources
    assert decide(0.95, 1.0, CALIBRATION, absent=[]).in_sources


# --- the index keeps it ---------------------------------------------------------------


def _vocabulary_files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.glob("vocabulary-*.npy"))


def test_an_index_keeps_its_vocabulary_and_the_engine_uses_it(tmp_path: Path) -> None:
    directory = tmp_path / "index"
    VectorStoreIndex.from_documents(LIGHTHOUSE, persist_dir=directory)
    named = json.loads((directory / MANIFEST).read_text())["calibration"]["vocabulary"]
    assert _vocabulary_files(directory) == [named]
    engine = VectorStoreIndex.load(directory).as_query_engine()
    answered = engine.query("How far does the Fresnel lamp at Skerry Point shine?")
    assert not answered.metadata.get("not_in_sources"), answered.metadata
    assert answered.metadata["absent_terms"] == []
    # The same question about a lamp the pages never name.
    refused = engine.query("How far does the Fresnel lamp at Skerry Point shine for Stevenson?")
    assert refused.metadata["not_in_sources"] is True
    assert refused.metadata["absent_terms"] == ["stevenson"]
    assert "'stevenson'" in refused.metadata["reason"]


def test_deleting_a_page_rebuilds_the_vocabulary_and_drops_the_old_file(tmp_path: Path) -> None:
    directory = tmp_path / "index"
    index = VectorStoreIndex.from_documents(LIGHTHOUSE, persist_dir=directory)
    before = _vocabulary_files(directory)
    assert index.vocabulary is not None and "skerry" in index.vocabulary
    # The lamp page is the only one naming Skerry.
    assert index.delete_documents([LIGHTHOUSE[0].doc_id]) == 1
    after = _vocabulary_files(directory)
    assert len(after) == 1 and after != before
    reloaded = VectorStoreIndex.load(directory)
    assert reloaded.vocabulary is not None and "skerry" not in reloaded.vocabulary
    assert "diaphone" in reloaded.vocabulary


def test_a_missing_vocabulary_file_only_turns_the_evidence_off(tmp_path: Path) -> None:
    directory = tmp_path / "index"
    VectorStoreIndex.from_documents(LIGHTHOUSE, persist_dir=directory)
    for path in directory.glob("vocabulary-*.npy"):
        path.unlink()
    index = VectorStoreIndex.load(directory)
    assert index.calibration is not None and index.vocabulary is None
    response = index.as_query_engine().query(
        "How far does the Fresnel lamp at Skerry Point shine for Stevenson?"
    )
    assert response.metadata["absent_terms"] == []
    assert response.metadata["abstention_rule"] == "calibrated"
