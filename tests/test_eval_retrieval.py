"""`ragtune eval retrieval` on SQuAD-format files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers import assert_one_line_error, run_cli

from ragtune import VectorStoreIndex
from ragtune.eval.retrieval import evaluate_retrieval, first_hit_rank
from ragtune.eval.squad import context_documents, load_squad

SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Lighthouses",
            "paragraphs": [
                {
                    "context": "The Eddystone Lighthouse stands on rocks fourteen kilometres south of Rame Head. The present tower, designed by James Douglass, was lit in 1882.",
                    "qas": [
                        {
                            "id": "q1",
                            "question": "Who designed the present Eddystone tower?",
                            "answers": [{"text": "James Douglass", "answer_start": 98}],
                        },
                        {
                            "id": "q2",
                            "question": "When was the present Eddystone tower lit?",
                            "answers": [{"text": "1882", "answer_start": 130}],
                        },
                    ],
                },
                {
                    "context": "Fresnel lenses focus the lamp's light into a beam using concentric prisms, so a small flame can be seen more than thirty kilometres away.",
                    "qas": [
                        {
                            "id": "q3",
                            "question": "What do Fresnel lenses use to focus light?",
                            "answers": [{"text": "concentric prisms", "answer_start": 56}],
                        }
                    ],
                },
                {
                    "context": "Keepers worked in shifts of four hours and logged the weather, passing ships and the state of the lamp every night.",
                    "qas": [
                        {
                            "id": "q4",
                            "question": "How long was a keeper's shift?",
                            "answers": [{"text": "four hours", "answer_start": 27}],
                        }
                    ],
                },
            ],
        }
    ],
}


@pytest.fixture()
def qa_file(tmp_path: Path) -> Path:
    path = tmp_path / "qa.json"
    path.write_text(json.dumps(SQUAD))
    return path


@pytest.fixture()
def qa_index(qa_file: Path, tmp_path: Path) -> Path:
    VectorStoreIndex.from_documents(
        context_documents(load_squad(qa_file)), persist_dir=tmp_path / "idx"
    )
    return tmp_path / "idx"


def test_first_hit_rank() -> None:
    assert first_hit_rank(["nothing", "Built in 1882."], ["1882"]) == 2
    assert first_hit_rank(["JAMES DOUGLASS"], ["James Douglass"]) == 1
    assert first_hit_rank(["a", "b"], ["c"]) is None


def test_scores_on_a_small_file(qa_file: Path, qa_index: Path) -> None:
    scores = evaluate_retrieval(VectorStoreIndex.load(qa_index), load_squad(qa_file))
    assert scores.questions == 4
    assert scores.recall[1] == 1.0 and scores.recall[10] == 1.0 and scores.mrr == 1.0
    assert 0 < scores.latency_p50_ms <= scores.latency_p95_ms


def test_cli_json_and_text(qa_file: Path, qa_index: Path) -> None:
    result = run_cli("eval", "retrieval", "--qa", str(qa_file), "--index", str(qa_index), "--json")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["questions"] == 4 and scores["recall"]["@5"] == 1.0
    text = run_cli(
        "eval", "retrieval", "--qa", str(qa_file), "--index", str(qa_index), "--mode", "keyword"
    )
    assert text.returncode == 0 and "4 questions, keyword retrieval: recall@1" in text.stdout


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{broken", "not JSON"),
        ("[1, 2, 3]", 'top-level "data" list'),
        (json.dumps({"data": [{"title": "x"}]}), 'data[0]: missing "paragraphs"'),
        (
            json.dumps({"data": [{"paragraphs": [{"context": 5, "qas": []}]}]}),
            "context: expected str, got int",
        ),
        (
            json.dumps(
                {
                    "data": [
                        {
                            "paragraphs": [
                                {"context": "c", "qas": [{"question": "q?", "answers": []}]}
                            ]
                        }
                    ]
                }
            ),
            "has no answers",
        ),
        (json.dumps({"data": []}), "holds no questions"),
    ],
)
def test_wrong_formats_are_one_line_errors(
    tmp_path: Path, qa_index: Path, content: str, fragment: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert_one_line_error(
        run_cli("eval", "retrieval", "--qa", str(bad), "--index", str(qa_index)), fragment
    )
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_missing_file_and_index(tmp_path: Path, qa_file: Path) -> None:
    assert_one_line_error(
        run_cli("eval", "retrieval", "--qa", str(tmp_path / "no.json"), "--index", str(tmp_path)),
        "no such file",
    )
    assert_one_line_error(
        run_cli("eval", "retrieval", "--qa", str(qa_file), "--index", str(tmp_path / "none")),
        "no index at",
    )


XQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "qa-xquad-en"


@pytest.mark.skipif(not XQUAD.exists(), reason="../shared/data/qa-xquad-en is not present")
def test_on_real_xquad_articles(tmp_path: Path) -> None:
    source = next(XQUAD.glob("*.json"))
    data = json.loads(source.read_text())
    data["data"] = data["data"][:4]  # four articles keep the test quick
    subset = tmp_path / "xquad-subset.json"
    subset.write_text(json.dumps(data))
    questions = load_squad(subset)
    index = VectorStoreIndex.from_documents(
        context_documents(questions), persist_dir=tmp_path / "idx"
    )
    scores = evaluate_retrieval(index, questions)
    assert scores.questions > 50
    assert scores.recall[5] >= 0.8, scores
