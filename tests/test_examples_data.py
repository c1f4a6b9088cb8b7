"""The example data the README and docs use (examples/docs, examples/data) loads with
ragtune's own readers, and says what the shop says: every answer in qa.json is on the
product page of its article, verbatim, and corpus.txt is what make_corpus.py writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ragtune.eval.squad import load_squad
from ragtune.extract.files import read_folder
from ragtune.train.data.records import (
    ChatRecord,
    TextRecord,
    load_preference_pairs,
    load_sft_records,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DATA = EXAMPLES / "data"
SITE = EXAMPLES / "shop" / "site"


@pytest.mark.parametrize(
    ("name", "expected_format", "count"),
    [("alpaca.json", "alpaca", 30), ("sharegpt.jsonl", "sharegpt", 10)],
)
def test_fine_tuning_sets_load_in_their_detected_format(
    name: str, expected_format: str, count: int
) -> None:
    found, records = load_sft_records(DATA / name)
    assert found == expected_format
    assert len(records) == count
    assert all(isinstance(r, ChatRecord) and r.messages[-1].role == "assistant" for r in records)
    # Not the same example over and over: every question is asked once.
    questions = [next(m.content for m in r.messages if m.role == "user") for r in records]
    assert len(set(questions)) == len(questions)


def test_preference_pairs_load_as_trl_pairs() -> None:
    pairs = load_preference_pairs(DATA / "dpo.json")
    assert len(pairs) == 20
    raw = json.loads((DATA / "dpo.json").read_text(encoding="utf-8"))
    assert all(set(record) == {"prompt", "chosen", "rejected"} for record in raw)
    assert all(pair.prompt[-1].role == "user" for pair in pairs)


def test_a_preference_file_is_not_taken_for_fine_tuning_data() -> None:
    from ragtune.errors import DatasetError

    with pytest.raises(DatasetError, match="ragtune align"):
        load_sft_records(DATA / "dpo.json")


def test_corpus_is_plain_text_of_the_documented_size() -> None:
    found, records = load_sft_records(DATA / "corpus.txt")
    assert found == "text"
    assert all(isinstance(record, TextRecord) for record in records)
    size = (DATA / "corpus.txt").stat().st_size
    assert 50_000 <= size <= 100_000, size
    assert "bold cherry cola" in (DATA / "corpus.txt").read_text(encoding="utf-8")


def test_corpus_is_what_make_corpus_writes() -> None:
    result = subprocess.run(
        [sys.executable, str(DATA / "make_corpus.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def product_pages() -> dict[str, str]:
    """Each product's page, by product name."""
    catalogue = json.loads((EXAMPLES / "shop" / "products.json").read_text(encoding="utf-8"))
    return {
        product["name"]: (SITE / "products" / f"{product['slug']}.html").read_text(encoding="utf-8")
        for product in catalogue
    }


def test_qa_answers_are_on_the_product_page_of_their_article() -> None:
    questions = load_squad(DATA / "qa.json")
    assert 15 <= len(questions) <= 20
    assert len({q.id for q in questions}) == len(questions)
    pages = product_pages()
    for question in questions:
        page = pages[question.title]  # each article is one product
        for answer in question.answers:
            assert answer in question.context, (question.id, answer)
            assert answer in page, (question.id, answer)


def test_qa_answer_starts_point_at_the_answers() -> None:
    raw = json.loads((DATA / "qa.json").read_text(encoding="utf-8"))
    for article in raw["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                for answer in qa["answers"]:
                    start = answer["answer_start"]
                    assert paragraph["context"][start:].startswith(answer["text"]), qa["id"]


def test_handbook_folder_reads_into_documents_with_its_table_and_code() -> None:
    """Every file of examples/docs (Markdown, HTML, text; one nested folder) gives a
    Document; what the docs point at, a table and a code block, comes through."""
    results = dict(read_folder(EXAMPLES / "docs"))
    failures = {path: r for path, r in results.items() if not isinstance(r, list)}
    assert failures == {}
    assert {path.suffix for path in results} == {".md", ".html", ".txt"}
    assert any(path.parent.name == "care" for path in results)
    assert 5 <= len(results) <= 8
    documents = [doc for result in results.values() if isinstance(result, list) for doc in result]
    texts = "\n".join(doc.text for doc in documents)
    assert "| Express | United Kingdom | $9.00 |" in texts
    assert "DEP 26 041 B" in texts
    assert "Returns are accepted within 30 days of delivery" in texts
