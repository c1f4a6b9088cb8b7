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
from ragtune.eval.answers import normalise_answer
from ragtune.eval.compare.augment import augment, checked_paraphrase
from ragtune.eval.compare.budget import (
    DEFAULT_ROUTES,
    ArmCosts,
    allocate,
    minimum_seconds,
    parse_budget,
    parse_routes,
)
from ragtune.eval.compare.measure import Meter, bootstrap_interval
from ragtune.eval.compare.scale import Scale, estimate_arm, parse_model_size
from ragtune.eval.questions_from_docs import (
    Chunk,
    llm_questions,
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


def _written(reply: dict[str, str]) -> Any:
    """A scripted model for the checks: the reply for the first key found in the prompt."""

    def generate(prompt: str) -> str:
        return next((text for key, text in reply.items() if key in prompt), "")

    return generate


def test_llm_questions_keep_only_those_that_pass_the_checks() -> None:
    chunks = [Chunk(f"file:///{name}", 0, text) for name, text in PAGES.items()]
    existing = questions_from_chunks(chunks, limit=1, seed=0)  # one fact taken: 2.4 metre
    replies = {
        "$39": "Question: What is the price of the Griffin Kite? It is a kite.",  # kept
        "Wren Hollow": "Who illustrated the Mapmaker's Atlas, Wren Hollow?",  # gold inside
        "2.4 metre": "Tell me about the kite's wingspan.",  # not a question
        "40 hours": "How long does the lighthouse lamp burn on one charge?",  # not retrieved
    }
    prompts: list[str] = []

    def generate(prompt: str) -> str:
        prompts.append(prompt)
        return _written(replies)(prompt)

    def finds_source(question: str, chunk: Chunk) -> bool:
        return "lamp" not in question  # as if retrieval missed the lamp's page

    made = llm_questions(chunks, generate, finds_source, existing, tries=10)
    taken = existing[0].answers[0]
    assert not any(f"Answer: {taken}\n" in prompt for prompt in prompts)  # not asked again
    assert made.tried == 3 == len(prompts)
    kept = {q.answers[0]: q for q in made.questions}
    expected_drops = {
        "$39": None,
        "Wren Hollow": "answer in the question",
        "2.4 metre": "not a question",
        "40 hours": "source chunk not retrieved",
    }
    expected_drops.pop(taken)
    assert set(kept) == {a for a, why in expected_drops.items() if why is None}
    assert made.dropped == {why: 1 for a, why in expected_drops.items() if why is not None}
    for question in made.questions:
        assert question.answers[0] in question.context and ":llm" in question.id
    # The question is read out of the reply's prose.
    assert kept["$39"].question == "What is the price of the Griffin Kite?"
    # A duplicate of an existing question is dropped too.
    again = llm_questions(chunks, generate, finds_source, existing + made.questions, tries=10)
    assert all(q.question not in {m.question for m in made.questions} for q in again.questions)


# --- augmentation: the facts many ways, the questions never --------------------------


def _leaks(records: list[dict[str, Any]], asked: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    """Every training record's text that holds an evaluation question or its pair."""
    found = []
    for record in records:
        turns = [message["content"] for message in record["messages"]]
        text = normalise_answer(" ".join(turns))
        for question, golds in asked:
            pair = any(turns[0] == question and gold in turns[1] for gold in golds)
            if normalise_answer(question) in text or pair:
                found.append(f"{question} in {turns}")
    return found


def test_augmentation_restates_facts_and_never_holds_an_eval_question() -> None:
    chunks = [Chunk(f"file:///{name}", 0, text) for name, text in PAGES.items()]
    asked = questions_from_chunks(chunks, limit=2, seed=1) + unanswerable_questions(chunks, 2)
    held_out = [(q.question, q.answers) for q in asked]
    made = augment(chunks, held_out)
    assert made.facts == 4 and made.held_out_dropped == 2  # two questions held out
    assert _leaks(made.records, held_out) == []
    # Without the held-out list the same questions would be trained on: the check bites.
    assert _leaks(augment(chunks, []).records, held_out)
    replies = [record["messages"][1]["content"] for record in made.records]
    for fact in ("$39", "2.4 metre", "Wren Hollow", "40 hours"):
        assert sum(fact in reply for reply in replies) >= 3, fact  # each fact several ways
    prompts = [record["messages"][0]["content"] for record in made.records]
    assert "What is the price of the Griffin Kite?" in prompts
    assert "Which person illustrated the Mapmaker's Atlas?" in prompts
    assert made.records == augment(chunks, held_out).records  # deterministic


def test_paraphrases_are_kept_only_with_the_fact_intact() -> None:
    sentence = "The Griffin Kite costs $39."
    assert checked_paraphrase(lambda _p: "For $39 you get the Griffin Kite.", sentence, "$39")
    assert checked_paraphrase(lambda _p: "It is cheap and fun to fly.", sentence, "$39") is None
    assert checked_paraphrase(lambda _p: sentence, sentence, "$39") is None
    assert checked_paraphrase(lambda _p: "", sentence, "$39") is None


# --- at scale ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "params"), [("7b", 7e9), ("1.5B", 1.5e9), ("7e9", 7e9)])
def test_parse_model_size(text: str, params: float) -> None:
    assert parse_model_size(text) == params


@pytest.mark.parametrize("text", ["seven", "7x", "-7b", "0", "100"])
def test_parse_model_size_refuses(text: str) -> None:
    with pytest.raises(RagtuneError, match="--scale-model"):
        parse_model_size(text)


def test_estimate_at_scale_prices_training_and_keeps_refusals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    arm = {"notes": {"corpus_tokens": 20_000, "epochs": 8.0}}

    def folder() -> Path:
        raise AssertionError("training is priced without the corpus files")

    small = estimate_arm("pretrain", arm, Scale(params=7e9), folder)
    assert small["tokens"] == 160_000 and small["seconds"] > 0 and small["money"] > 0
    bigger = estimate_arm("pretrain", arm, Scale(params=7e9, device="t4"), folder)
    assert bigger["seconds"] > small["seconds"]  # a T4 is slower than an A10G
    assert estimate_arm("base", arm, Scale(), folder)["seconds"] == 0
    assert "lora's training" in estimate_arm("lora+rag", arm, Scale(), folder)["summary"]
    # An arm without its token count, or a request the estimator refuses: recorded.
    assert "corpus" in estimate_arm("lora", {"notes": {}}, Scale(), folder)["error"]
    from ragtune.errors import EstimateError
    from ragtune.train.estimate import routes

    def refuse(_request: object) -> dict[str, Any]:
        raise EstimateError("fine-tuning reads the model itself")

    monkeypatch.setattr(routes, "estimate", refuse)
    row = estimate_arm("lora", arm, Scale(), folder)
    assert row["error"] == "fine-tuning reads the model itself"
    assert row["summary"].startswith("not estimated")

    def broken(_request: object) -> dict[str, Any]:
        raise TypeError("an estimator bug")

    monkeypatch.setattr(routes, "estimate", broken)  # nor does a bug stop the comparison
    assert estimate_arm("lora", arm, Scale(), folder)["error"] == "TypeError: an estimator bug"


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
    assert parse_routes("lora-aug+rag,lora-aug,lora") == ["lora", "lora-aug", "lora-aug+rag"]
    from ragtune.cli.compare import DEFAULT_ROUTES as shown

    assert shown == ",".join(DEFAULT_ROUTES)  # the CLI's default, written out, is the library's
    for bad, message in [
        ("rag,gpt", "unknown route 'gpt'"),
        ("rag,rag", "named twice"),
        ("lora+rag", "needs route lora"),
        ("lora,lora-aug+rag", "needs route lora-aug"),
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
    # the baselines are the last to go; a small arm dropped on the way is taken back
    assert set(allocate(list(needs), 450, needs)) == {"base", "rag", "pretrain"}
    assert set(allocate(list(needs), 420, needs)) == {"base", "rag"}
    assert set(allocate(list(needs), 350, needs)) == {"rag", "pretrain"}
    # a "+rag" arm is never taken back without the arm whose adapter it uses
    cheap = needs | {"lora+rag": 10.0}
    assert set(allocate(list(cheap), 450, cheap)) == {"base", "rag", "pretrain"}
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
    assert_one_line_error(
        run("--index", index, "-o", str(report), "--scale-device", "abacus"), "abacus"
    )
    assert_one_line_error(
        run("--index", index, "-o", str(report), "--scale-model", "huge"), "--scale-model"
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
    first = run_cli_in_process(
        capsys, monkeypatch, "compare", *common, "--routes", "base", "--llm-questions", "1"
    )
    assert first.returncode == 0, first.stderr
    results = json.loads((report / "results.json").read_text())
    assert results["arms"]["base"]["status"] == "done"
    # The bundled model was asked for a question: kept, or dropped with a reason.
    written = results["questions"]["generation"]["llm"]
    assert written["tried"] == 1
    assert written["kept"] + sum(written["dropped"].values()) == 1
    assert results["questions"]["answerable"] == 2 + written["kept"]
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
    assert results["questions"]["generation"]["llm"] == written  # kept from the first run
    rag = results["arms"]["rag"]
    assert rag["status"] == "done", rag
    assert len(rag["answers"]) == 3
    assert rag["scores"]["abstention_accuracy"] == 1.0  # the unanswerable one declined
    assert rag["intervals"]["contains"] is not None
    assert rag["freshness"]["seconds"] is not None, rag["freshness"]  # says why it failed
    assert rag["freshness"]["seconds"] < 60
    # rag at scale: ingesting the whole corpus and one question, on an A10G.
    at_scale = rag["estimate"]
    assert "error" not in at_scale, at_scale
    assert at_scale["chunks"] >= 3 and at_scale["seconds"] > 0 and at_scale["question_seconds"] > 0
    assert results["scale"]["price_per_hour"] > 0
    markdown = (report / "report.md").read_text()
    for row in ("cost", "resources", "data", "infrastructure", "expertise", "freshness"):
        assert f"| {row}" in markdown
    assert "| at scale (estimate)" in markdown and "ingest" in markdown
    page = (report / "report.html").read_text()
    assert "data:image/png;base64," in page
    assert "<script" not in page and "http://" not in page.replace("file:///", "")
    assert results["arms"]["rag"]["answers"][0]["question"].replace("'", "&#x27;") in page


# --- the training arms, on a tiny random model -----------------------------------------


def _tiny_context(tiny_index: Path, tmp_path: Path, **overrides: Any) -> Any:
    from tests.tiny_models import make_tiny_llama

    import ragtune
    from ragtune.eval.compare.arms import Context

    def engine(directory: Path, llm: Any) -> Any:
        return ragtune.VectorStoreIndex.load(directory).as_query_engine(llm=llm)

    settings: dict[str, Any] = {
        "index_dir": tiny_index,
        "work_dir": tmp_path / "report" / "runs",
        "questions": 3,
        "costs": ArmCosts(),
        "query_engine": engine,
        "base_model": str(make_tiny_llama(tmp_path / "tiny")),
        "max_steps": 3,
        "pretrain_settings": {
            "layers": 2,
            "heads": 2,
            "dim": 32,
            "context": 16,
            "batch_size": 4,
            "val_fraction": 0.25,
        },
    }
    return Context(**(settings | overrides))


def test_training_arms_on_a_tiny_model(tiny_index: Path, tmp_path: Path) -> None:
    from ragtune.eval.compare.arms import Context
    from ragtune.eval.compare.report import write_reports
    from ragtune.eval.compare.run import Plan, run_comparison
    from ragtune.train.data.records import load_sft_records

    chunks = [Chunk(f"file:///{name}", 0, text) for name, text in PAGES.items()]
    answerable = questions_from_chunks(chunks, limit=2)
    declined = unanswerable_questions(chunks, 1)
    context = _tiny_context(tiny_index, tmp_path)
    routes = ["lora", "lora+rag", "lora-aug", "lora-aug+rag", "pretrain"]
    plan = Plan(
        index_dir=tiny_index,
        output=tmp_path / "report",
        routes=routes,
        budget_s=3600,
        answerable=answerable,
        unanswerable=declined,
        question_source="test",
        context=context,
    )
    results = run_comparison(plan)
    for route in routes:
        arm = results["arms"][route]
        assert arm["status"] == "done", arm
        assert len(arm["answers"]) == 3
        assert "stopped_at_budget" not in arm
    lora, pretrained = results["arms"]["lora"], results["arms"]["pretrain"]
    assert lora["notes"]["steps"] == 3 and lora["preparation"]["tokens"] > 0
    assert pretrained["notes"]["steps"] == 3
    # Freshness of a fine-tuned arm: training again, its measured preparation.
    assert lora["freshness"]["seconds"] == lora["preparation"]["wall_s"]
    assert results["arms"]["lora+rag"]["freshness"]["seconds"] == lora["preparation"]["wall_s"]
    augmented = results["arms"]["lora-aug"]
    assert augmented["notes"]["adapter"] != lora["notes"]["adapter"]
    assert (
        results["arms"]["lora-aug+rag"]["freshness"]["seconds"]
        == (augmented["preparation"]["wall_s"])
    )
    # The augmented run trained on more text than the documents alone, and on no
    # evaluation question.
    assert augmented["notes"]["corpus_tokens"] > lora["notes"]["corpus_tokens"]
    summary = augmented["notes"]["augmentation"]
    assert summary["facts"] == 4 and summary["dropped_as_held_out"] >= 2
    _format, records = load_sft_records(Path(augmented["notes"]["augmentation_file"]))
    trained = [
        {"messages": [{"content": m.content} for m in record.messages]} for record in records
    ]
    assert len(trained) == summary["records"]
    held_out = [(q.question, q.answers) for q in answerable + declined]
    assert _leaks(trained, held_out) == []
    # Each training arm priced at scale (a 7B model on one A10G by default).
    for route in ("lora", "lora-aug", "pretrain"):
        estimate = results["arms"][route]["estimate"]
        assert estimate["tokens"] == round(
            results["arms"][route]["notes"]["corpus_tokens"]
            * results["arms"][route]["notes"]["epochs"]
        )
        assert "error" in estimate or estimate["seconds"] > 0, estimate
    assert results["scale"]["device"] == "a10g"
    write_reports(results, plan.output)
    page = (plan.output / "report.html").read_text()
    assert "Training loss" in page and "lora-aug" in page
    markdown = (plan.output / "report.md").read_text()
    assert "| at scale (estimate): a 7B-parameter model on 1 x a10g" in markdown
    assert "fact sentences restated as" in markdown

    # An interrupted run resumed in a fresh process: lora+rag finds lora's saved adapter.
    saved = json.loads((plan.output / "results.json").read_text())
    del saved["arms"]["lora+rag"], saved["arms"]["lora-aug+rag"]
    (plan.output / "results.json").write_text(json.dumps(saved))
    plan.context = Context(**{**context.__dict__, "shared": {}})
    resumed = run_comparison(plan, resume=True)
    for route in ("lora+rag", "lora-aug+rag"):
        assert resumed["arms"][route]["status"] == "done", resumed["arms"][route]
    assert resumed["arms"]["lora"] == saved["arms"]["lora"] | {"freshness": ANY}


def _ticking() -> Any:
    """A clock for the hard stop that reads one "second" more each time it is read (the
    arm reads it once a training step)."""
    ticks = iter(range(1, 10_000))
    return lambda: float(next(ticks))


@pytest.mark.parametrize("route", ["lora", "pretrain"])
def test_a_training_arm_over_its_share_is_stopped_and_keeps_its_last_checkpoint(
    route: str, tiny_index: Path, tmp_path: Path
) -> None:
    from ragtune.eval.compare.arms import PREPARE, ArmStopped

    # 16 steps planned, a checkpoint every 2; the time is up at step 5.
    context = _tiny_context(
        tiny_index, tmp_path, max_steps=16, training_stop_at=5.0, clock=_ticking()
    )
    context.seconds = 10_000.0
    prepared = PREPARE[route](context)
    notes = prepared.notes
    assert notes["stopped_at_budget"] is True
    assert notes["planned_steps"] == 16 and notes["steps_run"] == 5
    assert notes["steps"] == notes["steps_kept"] == 4  # the checkpoint of step 4
    assert [step for step, _loss in notes["loss_history"]] == [1, 2, 3, 4]
    assert prepared.tokens > 0
    assert isinstance(prepared.engine.query("How much does the Griffin Kite cost?").response, str)

    # Stopped before its first checkpoint: nothing to keep, said in one line.
    early = _tiny_context(
        tiny_index, tmp_path / "early", max_steps=16, training_stop_at=1.0, clock=_ticking()
    )
    early.seconds = 10_000.0
    with pytest.raises(ArmStopped, match="before its first checkpoint"):
        PREPARE[route](early)


def test_no_question_is_asked_once_the_budget_is_spent(tiny_index: Path, tmp_path: Path) -> None:
    import ragtune
    from ragtune.eval.compare.arms import Context
    from ragtune.eval.compare.report import markdown_report
    from ragtune.eval.compare.run import Plan, _run_arm

    chunks = [Chunk(f"file:///{name}", 0, text) for name, text in PAGES.items()]
    context = Context(
        index_dir=tiny_index,
        work_dir=tmp_path / "runs",
        questions=2,
        costs=ArmCosts(),
        query_engine=lambda d, llm: ragtune.VectorStoreIndex.load(d).as_query_engine(llm=llm),
        clock=_ticking(),  # one "second" a question
    )
    plan = Plan(
        index_dir=tiny_index,
        output=tmp_path,
        routes=["base"],
        budget_s=600,
        answerable=questions_from_chunks(chunks, limit=1),
        unanswerable=unanswerable_questions(chunks, 1),
        question_source="test",
        context=context,
        scale=None,
        budget_end=1.5,  # spent after the first question
    )
    arm = _run_arm("base", plan, 600, None)
    assert arm["status"] == "done" and arm["stopped_at_budget"] and arm["unasked"] == 1
    assert [a["answerable"] for a in arm["answers"]] == [True]
    assert arm["scores"]["answerable"] == 1 and arm["scores"]["unanswerable"] == 0
    results = {
        "index": str(tiny_index),
        "budget_s": 600,
        "elapsed_s": 10,
        "budget_rule": "test",
        "routes": ["base"],
        "questions": {"source": "test", "answerable": 1, "unanswerable": 1},
        "arms": {"base": arm},
    }
    assert "stopped: the budget ran out; questions not asked: 1" in markdown_report(results)
    # Spent before the first question: nothing to score, said so.
    plan.budget_end = -1.0
    assert _run_arm("base", plan, 600, None)["reason"] == (
        "the budget ran out before its first answer"
    )


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

    made = {
        "index": "/tmp/index",
        "budget_s": 600.0,
        "elapsed_s": 300.0,
        "budget_rule": "test",
        "scale": {
            "described": "a 7B-parameter model on 1 x a10g",
            "label": "NVIDIA A10G 24 GB",
            "price_per_hour": 1.01,
            "price_source": "profile",
        },
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
    made["arms"]["lora"]["estimate"] = {"summary": "train 1.2M tokens: 4.0 min, $0.07"}
    made["arms"]["rag"]["estimate"] = {
        "summary": "ingest 40 chunks: 2.0 s; a question 0.30 s",
        "note": "questions priced with a 135M-parameter answering model",
    }
    return made


def test_reports_escape_text_and_fill_the_five_rows(tmp_path: Path) -> None:
    from ragtune.eval.compare.report import write_reports

    write_reports(_made_up_results(), tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "| cost (preparation wall time, CPU-hours) | 1.0 s, 0.0003 CPU-h | 2.0 s" in markdown
    assert "skipped: does not fit, needs ~15.0 min" in markdown
    assert "| quality: contains [95% CI] | 0.33 [0.00, 1.00] | 1.00 [0.00, 1.00]" in markdown
    assert (
        "| at scale (estimate): a 7B-parameter model on 1 x a10g at $1.01/h, the whole corpus "
        "| n/a | ingest 40 chunks: 2.0 s; a question 0.30 s | train 1.2M tokens: 4.0 min, $0.07 "
        "| n/a |"
    ) in markdown
    assert "rag at scale: questions priced with a 135M-parameter answering model." in markdown
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
