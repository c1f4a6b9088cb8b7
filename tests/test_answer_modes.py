"""Answer modes: extract quotes a source sentence without any LLM; generate and auto use
the model; ``--answer``, ``--grounding`` and ``--answer-tokens`` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers import POTION_PATH, run_cli, run_cli_in_process

from ragtune import VectorStoreIndex
from ragtune.query.cleanup import CUT_MARK

QUESTION = "What is the flavor of the dark energy potion?"


def test_extract_quotes_the_answering_sentence_without_a_model(
    shop_index: VectorStoreIndex, shop_url: str, tmp_path: Path
) -> None:
    # A model that does not exist: loading it would fail, so the answer proves none was.
    engine = shop_index.as_query_engine(llm=str(tmp_path / "absent.gguf"), answer_mode="extract")
    response = engine.query(QUESTION)
    assert "cherry cola" in response.response.lower()
    assert response.metadata["answer_mode"] == "extract"
    (sentence,) = response.sentences
    assert sentence.supported and sentence.text == response.response
    (evidence,) = sentence.evidence
    source = response.source_nodes[evidence.number - 1]
    assert source.metadata["url"] == shop_url + POTION_PATH
    quoted = source.text[evidence.start : evidence.end]
    assert "cherry cola" in quoted.lower()
    assert [c.number for c in response.citations] == [evidence.number]
    assert response.response.endswith(f"[{evidence.number}].")

    tokens, streamed = engine.stream(QUESTION)
    assert "".join(tokens) == streamed.response == response.response


def test_extract_on_the_command_line(
    shop_index_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_cli_in_process(
        capsys,
        monkeypatch,
        "ask",
        QUESTION,
        "--index",
        str(shop_index_dir),
        "--answer",
        "extract",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    (sentence,) = answer["sentences"]
    assert sentence["supported"] and sentence["sources"] == [answer["citations"][0]["number"]]
    assert set(sentence["evidence"][0]) == {"n", "start", "end"}


@pytest.mark.parametrize(
    ("option", "value"), [("--answer", "guess"), ("--grounding", "loose"), ("--answer-tokens", "0")]
)
def test_bad_answer_options_fail_in_one_line(shop_index_dir: Path, option: str, value: str) -> None:
    result = run_cli("ask", QUESTION, "--index", str(shop_index_dir), option, value)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert option in result.stderr


def test_a_short_answer_budget_ends_cleanly(shop_index_dir: Path) -> None:
    result = run_cli(
        "ask", QUESTION, "--index", str(shop_index_dir), "--answer", "generate",
        "--grounding", "mark", "--answer-tokens", "6", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["metadata"]["truncated"] is True
    # One cut sentence, kept and visibly marked; never a silent mid-sentence stop.
    assert answer["answer"].endswith(CUT_MARK.strip())
    assert len(answer["sentences"]) == 1
