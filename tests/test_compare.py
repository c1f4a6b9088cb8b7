"""ragtune compare: questions made from documents, the budget, intervals, the reports,
bad input, and one run end to end on a tiny index with the bundled model."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from tests.helpers import assert_one_line_error, needs_chromium, run_cli_in_process

from ragtune.errors import RagtuneError
from ragtune.eval.compare.budget import (
    ArmCosts,
    allocate,
    minimum_seconds,
    parse_budget,
    parse_routes,
)
from ragtune.eval.compare.measure import Meter, bootstrap_interval
from ragtune.eval.questions_from_docs import (
    Chunk,
    questions_from_chunks,
    sentence_questions,
    sentences,
    unanswerable_questions,
)

os.environ.setdefault("RAGTUNE_TORCH_THREADS", "1")

PAGES = {
    "kite.md": "# Griffin Kite\n\nThe Griffin Kite costs $39. "
    "The Griffin Kite has a 2.4 metre wingspan made of ripstop polyester.\n",
    "atlas.md": "# Atlas\n\nThe Mapmaker's Atlas was illustrated by Wren Hollow. "
    "It has 240 pages.\n",
    "lamp.md": "# Lamp\n\nThe lighthouse lamp burns for 40 hours on one charge.\n",
}


# --- questions from documents ----------------------------------------------------------


def test_sentences_split_at_stops_and_skip_table_rows() -> None:
    text = "# Title\n\nOne fact here. Two facts here!\n| a | b |\n- A list item with 3 words"
    assert sentences(text) == [
        "Title",
        "One fact here.",
        "Two facts here!",
        "A list item with 3 words",
    ]


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("The Griffin Kite costs $39.", [("How much does the Griffin Kite cost?", "$39")]),
        (
            "The Mapmaker's Atlas was illustrated by Wren Hollow.",
            [("Who illustrated the Mapmaker's Atlas?", "Wren Hollow")],
        ),
        (
            "The lighthouse lamp burns for 40 hours on one charge.",
            [("The lighthouse lamp burns for how many hours on one charge?", "40 hours")],
        ),
        (
            "The Dark Energy Potion is a red energy drink brewed in small batches.",
            [("What is a red energy drink brewed in small batches?", "Dark Energy Potion")],
        ),
        (
            "Griffin Kite $29.50 A giant griffin-shaped kite.",
            [("How much does the Griffin Kite cost?", "$29.50")],
        ),
        # a number followed by a word that is no unit: the number alone
        (
            "The set holds 40 safe experiments for children.",
            [("The set holds how many safe experiments for children?", "40")],
        ),
        ("It stands 20 centimetres tall.", []),  # "it": nobody could know what
        ("A 240-page hardback of sixty maps.", []),  # "240-page" is never a word alone
        ("Too short.", []),
    ],
)
def test_sentence_questions(sentence: str, expected: list[tuple[str, str]]) -> None:
    assert sentence_questions(sentence) == expected
    for _question, answer in expected:
        assert answer in sentence  # the gold is a span of the sentence


def test_questions_from_chunks_are_deduplicated_deterministic_and_spread() -> None:
    chunks = [Chunk(f"file:///{name}", 0, text) for name, text in PAGES.items()]
    chunks.append(Chunk("file:///copy.md", 0, PAGES["kite.md"]))  # the same facts again
    first = questions_from_chunks(chunks, seed=3)
    assert first == questions_from_chunks(chunks, seed=3)
    texts = [q.question for q in first]
    assert len(texts) == len(set(texts)) == 4
    assert {q.answers[0] for q in first} == {"$39", "2.4 metre", "Wren Hollow", "40 hours"}
    for question in first:
        assert question.id.startswith(f"{question.title}#chunk0:q")
        assert question.answers[0] in question.context
    two = questions_from_chunks(chunks, limit=2, seed=3)
    assert len({q.title for q in two}) == 2  # one chunk each before a second from any


def test_unanswerable_questions_name_nothing_in_the_corpus() -> None:
    chunks = [Chunk("file:///a.md", 0, "The Zephyr Lantern glows. The Quasar Teapot pours.")]
    made = unanswerable_questions(chunks, 20)
    assert made and len(made) == 10  # 12 names, 2 of them in the corpus
    assert not any("Zephyr" in q.question or "Quasar" in q.question for q in made)


# --- budget, routes, intervals ---------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("20m", 1200), ("1.5h", 5400)])
def test_parse_budget(text: str, seconds: float) -> None:
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["20", "0m", "-5m", "20 minutes", "m", "1d", ""])
def test_parse_budget_refuses(text: str) -> None:
    with pytest.raises(RagtuneError, match="invalid budget"):
        parse_budget(text)


def test_parse_routes_orders_and_validates() -> None:
    assert parse_routes("rag, base") == ["base", "rag"]
    for bad, message in [
        ("rag,gpt", "unknown route 'gpt'"),
        ("rag,rag", "named twice"),
        ("lora+rag", "needs route lora"),
        (",", "no routes"),
    ]:
        with pytest.raises(RagtuneError, match=message):
            parse_routes(bad)


def test_allocate_drops_in_order_and_shares_the_rest_among_training() -> None:
    needs = {"base": 100.0, "rag": 300.0, "lora": 400.0, "lora+rag": 500.0, "pretrain": 50.0}
    shares = allocate(list(needs), 1000, needs)
    assert set(shares) == {"base", "rag", "lora", "pretrain"}  # lora+rag first: 1350 > 1000
    assert shares["base"] == 100 and shares["rag"] == 300
    # the 150 s left go to the training arms, by weight (lora 4, pretrain 3)
    assert shares["lora"] == pytest.approx(400 + 150 * 4 / 7)
    assert shares["pretrain"] == pytest.approx(50 + 150 * 3 / 7)
    # the baselines are the last to go
    assert set(allocate(list(needs), 450, needs)) == {"base", "rag"}
    assert set(allocate(list(needs), 350, needs)) == {"rag"}
    assert allocate(list(needs), 10, needs) == {}
    assert minimum_seconds("lora", 10, ArmCosts()) > minimum_seconds("base", 10, ArmCosts())


def test_bootstrap_interval() -> None:
    assert bootstrap_interval([]) is None
    assert bootstrap_interval([1.0] * 20) == (1.0, 1.0)
    values = [1.0] * 50 + [0.0] * 50
    low, high = bootstrap_interval(values, seed=0) or (0, 0)
    assert low < 0.5 < high
    assert low > 0.35 and high < 0.65  # about 0.5 +- 1.96 * 0.05
    assert bootstrap_interval(values, seed=0) == bootstrap_interval(values, seed=0)


def test_meter_measures_wall_and_cpu() -> None:
    with Meter() as meter:
        sum(i * i for i in range(200_000))
    assert meter.cost.wall_s > 0 and meter.cost.cpu_s > 0 and meter.cost.peak_rss_mb > 10


# --- the command: bad input ------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ragtune.ingest import IngestSettings, ingest

    base = tmp_path_factory.mktemp("compare")
    folder = base / "pages"
    folder.mkdir()
    for name, text in PAGES.items():
        (folder / name).write_text(text)
    ingest([str(folder)], base / "index", IngestSettings())
    return base / "index"


@pytest.fixture(scope="module")
def empty_index(tiny_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ragtune.index.vector_index import VectorStoreIndex

    directory = tmp_path_factory.mktemp("empty") / "index"
    index = VectorStoreIndex.from_documents(
        [__import__("ragtune").Document(text="gone soon", metadata={"url": "file:///x.md"})],
        persist_dir=directory,
    )
    index.delete_documents([row[0] for row in index.store.chunk_texts()])
    return directory


def test_bad_input_is_one_line(
    tiny_index: Path,
    empty_index: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli_in_process(capsys, monkeypatch, "compare", *args)

    report = tmp_path / "report"
    index = str(tiny_index)
    assert_one_line_error(run("--index", index, "-o", str(report), "--routes", "rag,gpt"), "gpt")
    assert_one_line_error(run("--index", index, "-o", str(report), "--budget", "20"), "budget")
    assert_one_line_error(run("--index", str(empty_index), "-o", str(report)), "holds no documents")
    assert_one_line_error(
        run("--index", index, "-o", str(report), "--budget", "5s", "--routes", "base,rag"),
        "too small for any arm",
    )
    wrong = tmp_path / "qa.json"
    wrong.write_text(json.dumps({"questions": ["What?"]}))
    assert_one_line_error(
        run("--index", index, "-o", str(report), "--qa", str(wrong)), "SQuAD", "data"
    )
    assert not report.exists() or not any(report.iterdir())  # no half report
    report.mkdir(exist_ok=True)
    (report / "notes.txt").write_text("mine")
    assert_one_line_error(run("--index", index, "-o", str(report)), "--overwrite")


# --- the command: a run, and a resumed one ---------------------------------------------


def test_compare_base_and_rag_then_resume(
    tiny_index: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    report = tmp_path / "report"
    common = ["--index", str(tiny_index), "-o", str(report), "--budget", "15m"]
    common += ["--questions", "2", "--unanswerable", "1"]
    first = run_cli_in_process(capsys, monkeypatch, "compare", *common, "--routes", "base")
    assert first.returncode == 0, first.stderr
    results = json.loads((report / "results.json").read_text())
    assert results["arms"]["base"]["status"] == "done"
    base_answers = results["arms"]["base"]["answers"]

    # Resumed with one more arm: base is not run again (it would fail here).
    from ragtune.eval.compare import arms

    def refuse(_context: object) -> object:
        raise AssertionError("base ran again")

    monkeypatch.setitem(arms.PREPARE, "base", refuse)
    second = run_cli_in_process(
        capsys, monkeypatch, "compare", *common, "--routes", "base,rag", "--resume"
    )
    assert second.returncode == 0, second.stderr
    results = json.loads((report / "results.json").read_text())
    assert results["arms"]["base"]["answers"] == base_answers
    rag = results["arms"]["rag"]
    assert rag["status"] == "done", rag
    assert len(rag["answers"]) == 3
    assert rag["scores"]["abstention_accuracy"] == 1.0  # the unanswerable one declined
    assert rag["intervals"]["contains"] is not None
    assert rag["freshness"]["seconds"] < 60
    markdown = (report / "report.md").read_text()
    for row in ("cost", "resources", "data", "infrastructure", "expertise", "freshness"):
        assert f"| {row}" in markdown
    page = (report / "report.html").read_text()
    assert "data:image/png;base64," in page
    assert "<script" not in page and "http://" not in page.replace("file:///", "")
    assert results["arms"]["rag"]["answers"][0]["question"].replace("'", "&#x27;") in page


# --- the training arms, on a tiny random model -----------------------------------------


def test_training_arms_on_a_tiny_model(tiny_index: Path, tmp_path: Path) -> None:
    from tests.tiny_models import make_tiny_llama

    import ragtune
    from ragtune.eval.compare.arms import Context
    from ragtune.eval.compare.report import write_reports
    from ragtune.eval.compare.run import Plan, run_comparison

    base = make_tiny_llama(tmp_path / "tiny")
    chunks = [Chunk(f"file:///{name}", 0, text) for name, text in PAGES.items()]
    answerable = questions_from_chunks(chunks, limit=2)
    declined = unanswerable_questions(chunks, 1)

    def engine(directory: Path, llm: Any) -> Any:
        return ragtune.VectorStoreIndex.load(directory).as_query_engine(llm=llm)

    context = Context(
        index_dir=tiny_index,
        work_dir=tmp_path / "report" / "runs",
        questions=3,
        costs=ArmCosts(),
        query_engine=engine,
        base_model=str(base),
        max_steps=3,
        pretrain_settings={
            "layers": 2,
            "heads": 2,
            "dim": 32,
            "context": 16,
            "batch_size": 4,
            "val_fraction": 0.25,
        },
    )
    plan = Plan(
        index_dir=tiny_index,
        output=tmp_path / "report",
        routes=["lora", "lora+rag", "pretrain"],
        budget_s=3600,
        answerable=answerable,
        unanswerable=declined,
        question_source="test",
        context=context,
    )
    results = run_comparison(plan)
    for route in ("lora", "lora+rag", "pretrain"):
        arm = results["arms"][route]
        assert arm["status"] == "done", arm
        assert len(arm["answers"]) == 3
    lora, pretrained = results["arms"]["lora"], results["arms"]["pretrain"]
    assert lora["notes"]["steps"] == 3 and lora["preparation"]["tokens"] > 0
    assert pretrained["notes"]["steps"] == 3
    # Freshness of a fine-tuned arm: training again, its measured preparation.
    assert lora["freshness"]["seconds"] == lora["preparation"]["wall_s"]
    assert results["arms"]["lora+rag"]["freshness"]["seconds"] == lora["preparation"]["wall_s"]
    write_reports(results, plan.output)
    assert "Training loss" in (plan.output / "report.html").read_text()

    # An interrupted run resumed in a fresh process: lora+rag finds lora's saved adapter.
    saved = json.loads((plan.output / "results.json").read_text())
    del saved["arms"]["lora+rag"]
    (plan.output / "results.json").write_text(json.dumps(saved))
    plan.context = Context(**{**context.__dict__, "shared": {}})
    resumed = run_comparison(plan, resume=True)
    assert resumed["arms"]["lora+rag"]["status"] == "done", resumed["arms"]["lora+rag"]
    assert resumed["arms"]["lora"] == saved["arms"]["lora"] | {"freshness": ANY}


# --- the report, on made-up results ----------------------------------------------------


def _made_up_results() -> dict[str, Any]:
    def arm(route: str, contains: list[bool], wall: float) -> dict[str, Any]:
        answers = [
            {
                "id": f"q{i}",
                "question": f"Question {i} <b>bold</b>?",
                "answerable": True,
                "golds": [f"gold {i}"],
                "answer": "<script>alert(1)</script>" if i == 0 else f"answer {i}",
                "abstained": False,
                "contains": hit,
                "sources": ["file:///kite.md"] if route == "rag" else [],
            }
            for i, hit in enumerate(contains)
        ]
        share = sum(contains) / len(contains)
        return {
            "route": route,
            "status": "done",
            "preparation": {
                "wall_s": wall,
                "cpu_s": wall,
                "cpu_hours": wall / 3600,
                "peak_rss_mb": 400.0,
                "tokens": 1000,
            },
            "answer_tokens": 50,
            "scores": {
                "contains": share,
                "f1": share / 2,
                "abstention_accuracy": None,
                "faithfulness": None,
                "latency_p50_s": 1.0,
                "latency_p95_s": 2.0,
            },
            "intervals": {"contains": (0.0, 1.0), "f1": (0.0, 0.5), "abstention": None},
            "answers": answers,
            "notes": {"loss_history": [(1, 3.0), (2, 2.5)]} if route == "lora" else {},
            "freshness": {"seconds": wall, "how": "test"},
            "estimate": None,
        }

    return {
        "index": "/tmp/index",
        "budget_s": 600.0,
        "elapsed_s": 300.0,
        "budget_rule": "test",
        "routes": ["base", "rag", "lora", "pretrain"],
        "questions": {
            "source": "test",
            "answerable": 3,
            "unanswerable": 0,
            "items": {"q0": {"source": "file:///kite.md", "evidence": "It costs $39 & more."}},
        },
        "arms": {
            "base": arm("base", [False, False, True], 1.0),
            "rag": arm("rag", [True, True, True], 2.0),
            "lora": arm("lora", [False, True, False], 300.0),
            "pretrain": {
                "route": "pretrain",
                "status": "skipped",
                "reason": "does not fit",
                "estimated_need_s": 900.0,
                "estimate": None,
            },
        },
    }


def test_reports_escape_text_and_fill_the_five_rows(tmp_path: Path) -> None:
    from ragtune.eval.compare.report import write_reports

    write_reports(_made_up_results(), tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "| cost (preparation wall time, CPU-hours) | 1.0 s, 0.0003 CPU-h | 2.0 s" in markdown
    assert "skipped: does not fit, needs ~15.0 min" in markdown
    assert "| quality: contains [95% CI] | 0.33 [0.00, 1.00] | 1.00 [0.00, 1.00]" in markdown
    page = (tmp_path / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "It costs $39 &amp; more." in page
    assert page.count("data:image/png;base64,") == 3  # scatter, bars, loss curves


@needs_chromium
def test_report_renders_in_chromium(tmp_path: Path) -> None:
    import shutil

    from matplotlib.image import imread

    from ragtune.eval.compare.report import write_reports

    write_reports(_made_up_results(), tmp_path)
    shot = tmp_path / "shot.png"
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,2400",
            f"--screenshot={shot}",
            (tmp_path / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = imread(shot)
    assert pixels.shape[0] == 2400 and pixels.shape[1] == 1200
    # Tables and plots drawn: far from a blank page.
    assert float(pixels[..., :3].std()) > 0.05
