"""`ragtune eval answers`: answer metrics, the unanswerable split, the command end to end."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from tests.helpers import assert_one_line_error, run_cli, run_cli_in_process

from ragtune import VectorStoreIndex
from ragtune.documents import (
    AnswerSentence,
    Citation,
    Evidence,
    NodeWithScore,
    Response,
    TextNode,
)
from ragtune.errors import QAFormatError
from ragtune.eval.answers import (
    cited_sources,
    contains_answer,
    exact_match,
    normalise_answer,
    score_response,
    scores_table,
    summarise,
    token_f1,
)
from ragtune.eval.report import markdown_table
from ragtune.eval.squad import (
    Question,
    context_documents,
    load_squad,
    split_by_article,
    squad_json,
)

LIGHTHOUSE = (
    "The Eddystone Lighthouse stands on rocks fourteen kilometres south of Rame Head. "
    "The present tower, designed by James Douglass, was lit in 1882."
)
FRESNEL = (
    "Fresnel lenses focus the lamp's light into a beam using concentric prisms, so a "
    "small flame can be seen more than thirty kilometres away."
)
KEEPERS = (
    "Keepers worked in shifts of four hours and logged the weather, passing ships and "
    "the state of the lamp every night."
)
LAVA = (
    "Basaltic lava erupts at about 1,100 to 1,250 degrees Celsius and can flow for "
    "tens of kilometres before it cools."
)


def _qa(qid: str, question: str, answer: str, context: str) -> dict[str, object]:
    return {
        "id": qid,
        "question": question,
        "answers": [{"text": answer, "answer_start": context.find(answer)}],
    }


LIGHTHOUSES = {
    "version": "1.1",
    "data": [
        {
            "title": "Lighthouses",
            "paragraphs": [
                {
                    "context": LIGHTHOUSE,
                    "qas": [
                        _qa(
                            "q1",
                            "Who designed the present Eddystone tower?",
                            "James Douglass",
                            LIGHTHOUSE,
                        ),
                        _qa("q2", "When was the present Eddystone tower lit?", "1882", LIGHTHOUSE),
                    ],
                },
                {
                    "context": FRESNEL,
                    "qas": [
                        _qa(
                            "q3",
                            "What do Fresnel lenses use to focus light?",
                            "concentric prisms",
                            FRESNEL,
                        )
                    ],
                },
                {
                    "context": KEEPERS,
                    "qas": [
                        _qa(
                            "q4", "How long was a lighthouse keeper's shift?", "four hours", KEEPERS
                        )
                    ],
                },
            ],
        }
    ],
}
VOLCANOES = {
    "version": "1.1",
    "data": [
        {
            "title": "Volcanoes",
            "paragraphs": [
                {
                    "context": LAVA,
                    "qas": [
                        _qa(
                            "v1",
                            "At what temperature does basaltic lava erupt?",
                            "1,100 to 1,250 degrees Celsius",
                            LAVA,
                        ),
                    ],
                }
            ],
        }
    ],
}


def _question(answers: tuple[str, ...] = ("four hours",), qid: str = "q") -> Question:
    return Question(id=qid, question="How long?", answers=answers, context=KEEPERS, title="T")


def _node(text: str) -> NodeWithScore:
    return NodeWithScore(TextNode(text=text, id_=str(abs(hash(text)))), 0.5)


# --- the measures on constructed answers ----------------------------------------------------


def test_squad_normalisation_exact_match_and_f1() -> None:
    assert normalise_answer("The  Eddystone, Lighthouse!") == "eddystone lighthouse"
    assert normalise_answer("an apple\tA day") == "apple day"
    assert exact_match("the James Douglass.", ["Rame Head", "James Douglass"])
    assert not exact_match("James Douglass designed it", ["James Douglass"])
    # 2 of 4 predicted tokens are gold, both gold tokens found: P 0.5, R 1, F1 2/3.
    assert token_f1("James Douglass designed it", ["James Douglass"]) == pytest.approx(2 / 3)
    assert token_f1("nothing shared", ["James Douglass"]) == 0.0
    assert token_f1("Douglass", ["James Douglass", "Douglass"]) == 1.0  # best over the golds


def test_contains_needs_whole_words() -> None:
    assert contains_answer("Keepers worked shifts of Four Hours.", ["four hours"])
    assert not contains_answer("It stands fourteen kilometres out.", ["four"])
    assert not contains_answer("anything at all", ["the"])  # normalises to nothing: never found
    assert contains_answer("It was lit in 1882, by oil.", ["1882"])


def test_faithfulness_and_citation_precision_from_the_response() -> None:
    sources = [_node(KEEPERS), _node(FRESNEL), _node(LIGHTHOUSE)]
    response = Response(
        "Shifts were four hours long. Lenses use prisms. Keepers sang.",
        sources,
        {"unsupported_dropped": 2},
        citations=[Citation(2, sources[1])],
        sentences=[
            AnswerSentence("Shifts were four hours long.", True, [1], [Evidence(1, 18, 33)]),
            AnswerSentence("Lenses use prisms.", True, [2], [Evidence(2, 0, 14)]),
            AnswerSentence("Keepers sang.", False),
        ],
    )
    assert cited_sources(response) == [2, 1]  # [n] citations first, then the sentences'
    record = score_response(_question(), response, answerable=True, seconds=0.5)
    assert (record.sentences, record.supported_sentences) == (3, 2)
    assert (record.cited, record.cited_with_answer) == (2, 1)  # FRESNEL lacks "four hours"
    assert record.contains and not record.exact_match
    scores = summarise([record])
    assert scores.faithfulness == pytest.approx(2 / 3)
    assert scores.citation_precision == 0.5
    assert scores.checked_answers == 1 and scores.dropped_sentences == 2


def test_unchecked_answers_leave_faithfulness_unknown() -> None:
    response = Response("Four hours.", [_node(KEEPERS)], {})  # grounding off: no sentences
    record = score_response(_question(), response, answerable=True, seconds=0.1)
    scores = summarise([record])
    assert scores.faithfulness is None and scores.checked_answers == 0
    assert scores.citation_precision is None  # nothing cited
    assert scores.exact_match == 1.0 and scores.f1 == 1.0 and scores.contains == 1.0


def test_abstention_accounting() -> None:
    declined = {"not_in_sources": True}
    records = [
        # Answerable and declined: a false abstention, and no credit for the text,
        # even one that happens to hold the gold answer.
        score_response(_question(qid="a1"), Response("four hours", [], declined), True, 0.01),
        score_response(_question(qid="a2"), Response("Four hours.", [], {}), True, 2.0),
        score_response(_question(qid="a3"), Response("No idea.", [], {}), True, 3.0),
        score_response(_question(qid="a4"), Response("Four hours.", [], {}), True, 4.0),
        # Unanswerable: two declined, one answered anyway.
        score_response(_question(qid="u1"), Response("x", [], declined), False, 0.02),
        score_response(_question(qid="u2"), Response("x", [], declined), False, 0.03),
        score_response(_question(qid="u3"), Response("Four hours.", [], {}), False, 5.0),
    ]
    assert records[0].abstained and not records[0].contains and records[0].f1 == 0.0
    assert not records[6].contains  # an unanswerable question earns no correctness
    scores = summarise(records, "constructed")
    assert (scores.answerable, scores.unanswerable) == (4, 3)
    assert scores.false_abstention_rate == 0.25
    assert scores.abstention_accuracy == pytest.approx(2 / 3)
    assert scores.contains == 0.5 and scores.exact_match == 0.5
    assert scores.latency_p50_s == 2.0 and scores.latency_p95_s == 5.0
    assert summarise(records[:4]).abstention_accuracy is None  # no unanswerable questions
    table = scores_table([scores])
    assert table.splitlines()[2].startswith("| constructed | 4 | 0.500 |")


def test_markdown_table_escapes_cells() -> None:
    table = markdown_table(["run", "value"], [["a|b\nc", "1"]])
    assert table.splitlines() == ["| run | value |", "| --- | ---: |", "| a\\|b c | 1 |"]
    with pytest.raises(ValueError):
        markdown_table(["one", "two"], [["only one"]])


# --- the unanswerable split ------------------------------------------------------------------


def test_split_by_article_keeps_articles_whole_and_round_trips(tmp_path: Path) -> None:
    both = copy.deepcopy(LIGHTHOUSES)
    both["data"] += VOLCANOES["data"]
    path = tmp_path / "both.json"
    path.write_text(json.dumps(both))
    questions = load_squad(path)
    kept, held = split_by_article(questions, held_out=1, seed=3)
    assert len(kept) + len(held) == len(questions)
    assert len({q.title for q in held}) == 1
    assert not {q.title for q in kept} & {q.title for q in held}
    assert not {q.context for q in kept} & {q.context for q in held}
    assert split_by_article(questions, held_out=1, seed=3) == (kept, held)  # seeded
    written = tmp_path / "held.json"
    written.write_text(json.dumps(squad_json(held)))
    assert load_squad(written) == held
    for wrong in (0, 2):
        with pytest.raises(QAFormatError, match="both sides need at least one article"):
            split_by_article(questions, held_out=wrong)


# --- the command ------------------------------------------------------------------------------


@pytest.fixture()
def qa_files(tmp_path: Path) -> tuple[Path, Path]:
    answerable, unanswerable = tmp_path / "lighthouses.json", tmp_path / "volcanoes.json"
    answerable.write_text(json.dumps(LIGHTHOUSES))
    unanswerable.write_text(json.dumps(VOLCANOES))
    return answerable, unanswerable


@pytest.fixture()
def qa_index(qa_files: tuple[Path, Path], tmp_path: Path) -> Path:
    """The lighthouse paragraphs only: the volcano question's article is not indexed."""
    VectorStoreIndex.from_documents(
        context_documents(load_squad(qa_files[0])), persist_dir=tmp_path / "idx"
    )
    return tmp_path / "idx"


def test_cli_answers_with_the_bundled_model(
    qa_files: tuple[Path, Path], qa_index: Path, tmp_path: Path
) -> None:
    answerable, unanswerable = qa_files
    report = tmp_path / "answers.md"
    common = ["eval", "answers", "--qa", str(answerable), "--index", str(qa_index)]
    result = run_cli(
        *common, "--unanswerable", str(unanswerable), "--limit", "1", "--json",
        "--markdown", str(report), "--answer", "auto",  # the model asked, then checked
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    scores, answers = data["scores"], data["answers"]
    assert (scores["answerable"], scores["unanswerable"]) == (1, 1)
    assert [a["id"] for a in answers] == ["q1", "v1"]
    assert all(a["answer"].strip() for a in answers)
    # The summary is the records' own accounting.
    assert scores["false_abstention_rate"] == float(answers[0]["abstained"])
    assert scores["abstention_accuracy"] == float(answers[1]["abstained"])
    for name in ("exact_match", "f1", "contains"):
        assert 0.0 <= scores[name] <= 1.0
    assert 0 < scores["latency_p50_s"] <= scores["latency_p95_s"]
    rows = report.read_text().splitlines()
    assert rows[0].startswith("| run | answerable | EM | F1 | contains | faithfulness |")
    assert rows[2].startswith("| auto answers, strict grounding | 1 |")

    text = run_cli(*common, "--limit", "1")  # no --answer: the bundled model's default
    assert text.returncode == 0, text.stderr
    assert "extract answers" in text.stdout
    assert "contains" in text.stdout and "p95 s" in text.stdout
    assert "abstention" in text.stdout and "n/a" in text.stdout  # no unanswerable questions


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{broken", "not JSON"),
        ("[1, 2, 3]", 'top-level "data" list'),
        (json.dumps({"data": [{"title": "x"}]}), 'data[0]: missing "paragraphs"'),
        (json.dumps({"data": []}), "holds no questions"),
    ],
)
def test_bad_question_files_are_one_line_errors(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    qa_files: tuple[Path, Path],
    content: str,
    fragment: str,
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    index = str(tmp_path / "idx")
    for args in (
        ["--qa", str(bad)],
        ["--qa", str(qa_files[0]), "--unanswerable", str(bad)],
    ):
        result = run_cli_in_process(capsys, monkeypatch, "eval", "answers", "--index", index, *args)
        assert_one_line_error(result, fragment)
    assert not (tmp_path / "idx").exists()


def test_bad_arguments_are_one_line_errors(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    qa_files: tuple[Path, Path],
) -> None:
    answerable, unanswerable = qa_files
    both = tmp_path / "both.json"
    both.write_text(json.dumps({"data": LIGHTHOUSES["data"] + VOLCANOES["data"]}))
    missing_index = str(tmp_path / "none")
    cases = [
        (["--qa", str(tmp_path / "no.json")], "no such file"),
        (["--qa", str(answerable), "--unanswerable", str(tmp_path / "no.json")], "no such file"),
        (["--qa", str(answerable)], "no index at"),
        (["--qa", str(answerable), "--limit", "0"], "--limit"),
        (["--qa", str(answerable), "--answer", "guess"], "--answer"),
        (["--qa", str(answerable), "--unanswerable", str(both)], "shares article 'Lighthouses'"),
        (
            ["--qa", str(answerable), "--markdown", str(tmp_path / "no" / "t.md")],
            "no such directory for --markdown",
        ),
        (["--qa", str(answerable), "--markdown", str(tmp_path)], "is a directory"),
    ]
    for args, fragment in cases:
        result = run_cli_in_process(
            capsys, monkeypatch, "eval", "answers", "--index", missing_index, *args
        )
        assert_one_line_error(result, fragment)
