"""``ragtune compare``: every route to the index's knowledge, on the same questions."""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ragtune.cli.options import IndexOption, JsonOption
from ragtune.errors import RagtuneError
from ragtune.terminal import out

if TYPE_CHECKING:
    from ragtune.eval.squad import Question

# Written out, not imported, so --help loads nothing (held equal to budget.DEFAULT_ROUTES
# by a test).
DEFAULT_ROUTES = "base,rag,lora,lora-aug,lora+rag,pretrain"


def compare_command(
    index: IndexOption,
    output: Annotated[Path, typer.Option("--output", "-o", help="Report directory.")],
    budget: Annotated[
        str, typer.Option(help="Time for the whole comparison: 90s, 20m, 1h.")
    ] = "30m",
    routes: Annotated[
        str,
        typer.Option(
            help="Comma list of base, rag, lora, lora-aug, lora+rag, lora-aug+rag, pretrain."
        ),
    ] = DEFAULT_ROUTES,
    qa: Annotated[
        Path | None,
        typer.Option(
            "--qa", help="Your own questions (SQuAD v1.1 JSON) instead of generated ones."
        ),
    ] = None,
    questions: Annotated[
        int, typer.Option(min=1, help="How many answerable questions to generate.")
    ] = 20,
    unanswerable: Annotated[
        int, typer.Option(min=0, help="How many questions about things not in the index.")
    ] = 5,
    llm: Annotated[
        str | None, typer.Option(help="The closed-book and RAG model (default: bundled SmolLM2).")
    ] = None,
    base_model: Annotated[
        str | None,
        typer.Option(
            "--base-model", help="The model fine-tuned by lora (default: bundled SmolLM2)."
        ),
    ] = None,
    llm_questions: Annotated[
        int,
        typer.Option(
            "--llm-questions",
            min=0,
            help="Also ask the model to write up to N questions (kept only if they pass "
            "the checks); counts against the budget.",
        ),
    ] = 0,
    llm_paraphrases: Annotated[
        bool,
        typer.Option(
            "--llm-paraphrases",
            help="lora-aug: also train on the model's rewordings of each fact (checked).",
        ),
    ] = False,
    scale_model: Annotated[
        str, typer.Option(help="At-scale estimate: the model's parameters (7b, 1.5b, 7e9).")
    ] = "7b",
    scale_device: Annotated[
        str,
        typer.Option(help="At-scale estimate: a GPU profile (t4, a10g, l4, a100-80g, h100, ...)."),
    ] = "a10g",
    scale_gpus: Annotated[int, typer.Option(min=1, help="At-scale estimate: GPUs.")] = 1,
    scale_price: Annotated[
        float | None,
        typer.Option(help="At-scale estimate: US$ an hour for all GPUs (default: the profile's)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the generated questions.")] = 0,
    resume: Annotated[bool, typer.Option(help="Skip the arms an earlier run finished.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier report.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Measure every route on the same held-out questions, side by side.

    The base model, RAG, LoRA fine-tuning (plain and on augmented records), each with
    RAG, and a model pretrained from scratch; writes report.md, report.html and
    results.json. Each arm is also priced at scale with ragtune estimate (default: a 7B
    model on one A10G at the profile's price).
    """
    from ragtune.eval.compare.budget import parse_budget, parse_routes
    from ragtune.eval.compare.scale import Scale, check_scale, parse_model_size

    seconds = parse_budget(budget)  # cheap checks first: one-line errors before any loading
    chosen = parse_routes(routes)
    if resume and overwrite:
        raise RagtuneError("--resume and --overwrite: choose one")
    scale = Scale(parse_model_size(scale_model), scale_device, scale_gpus, scale_price)
    check_scale(scale)
    _check_output(output, resume, overwrite)

    from ragtune import VectorStoreIndex  # with the query engine registered
    from ragtune.eval.compare.arms import Context
    from ragtune.eval.compare.report import write_reports
    from ragtune.eval.compare.run import Plan, run_comparison

    began = time.perf_counter()
    answerable, declined, source = _questions(
        index, qa, output, questions, unanswerable, seed, resume
    )
    question_stats: dict[str, Any] = {}
    if source == "generated from the index's chunks":
        question_stats["generation"] = {"templated": len(answerable)}

    def query_engine(directory: Path, model: Any) -> Any:
        return VectorStoreIndex.load(directory).as_query_engine(llm=model)

    context = Context(
        index_dir=index,
        work_dir=output / "runs",
        questions=len(answerable) + len(declined),
        costs=_costs(),
        query_engine=query_engine,
        base_model=base_model,
        llm=llm,
        llm_paraphrases=llm_paraphrases,
    )
    plan = Plan(
        index_dir=index,
        output=output,
        routes=chosen,
        budget_s=seconds,
        answerable=answerable,
        unanswerable=declined,
        question_source=source,
        context=context,
        costs=context.costs,
        rag_freshness=lambda asked: rag_freshness(asked, context.shared.get("llm")),
        scale=scale,
        question_stats=question_stats,
    )
    from ragtune.eval.compare.run import check_fits

    check_fits(plan)  # before any question file is written
    if llm_questions and "generation" in question_stats:
        written = _written_questions(index, context, answerable, llm_questions, seed)
        answerable += written.questions
        question_stats["generation"]["llm"] = written.stats()
    plan.spent_before_s = time.perf_counter() - began
    _save_questions(output, answerable, declined)
    with _arm_progress() as progress:
        results = run_comparison(plan, resume=resume, progress=progress)
    write_reports(results, output)
    if as_json:
        out.print_data(
            {k: v for k, v in results.items() if k != "arms"}
            | {
                "arms": {
                    route: {k: v for k, v in arm.items() if k not in ("answers", "latency_s")}
                    for route, arm in results["arms"].items()
                }
            }
        )
        return
    out.print((output / "report.md").read_text(encoding="utf-8"))


def _costs() -> Any:
    from ragtune.eval.compare.budget import ArmCosts

    return ArmCosts()


def _check_output(output: Path, resume: bool, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise RagtuneError(f"{output}: exists and is not a directory")
    used = output.is_dir() and any(output.iterdir())
    if used and not (resume or overwrite):
        raise RagtuneError(f"{output}: not empty; use --resume to continue or --overwrite")
    if used and overwrite:
        for name in (
            "results.json",
            "report.md",
            "report.html",
            "questions.json",
            "unanswerable.json",
        ):
            (output / name).unlink(missing_ok=True)
        shutil.rmtree(output / "runs", ignore_errors=True)


def _questions(
    index: Path,
    qa: Path | None,
    output: Path,
    count: int,
    unanswerable: int,
    seed: int,
    resume: bool,
) -> tuple[list[Question], list[Question], str]:
    """The questions: saved ones on --resume, else --qa's, else made from the index."""
    from ragtune.eval.questions_from_docs import (
        Chunk,
        questions_from_chunks,
        unanswerable_questions,
    )
    from ragtune.eval.squad import load_squad
    from ragtune.index.vector_index import VectorStoreIndex

    saved = output / "questions.json"
    if resume and saved.is_file():
        declined_file = output / "unanswerable.json"
        declined = load_squad(declined_file) if declined_file.is_file() else []
        return load_squad(saved), declined, "saved by the earlier run"
    loaded = VectorStoreIndex.load(index)
    try:
        rows = sorted(loaded.store.chunk_texts(), key=lambda row: (row[2], row[1], row[0]))
    finally:
        loaded.close()
    chunks = [Chunk(url, number, text) for _doc, number, url, text in rows if text.strip()]
    if not chunks:
        raise RagtuneError(f"{index}: the index holds no documents to ask about")
    declined = unanswerable_questions(chunks, unanswerable, seed)
    if qa is not None:
        return load_squad(qa), declined, f"--qa {qa}"
    made = questions_from_chunks(chunks, limit=count, seed=seed)
    if not made:
        raise RagtuneError(f"{index}: no sentence in the index gives a question; use --qa")
    return made, declined, "generated from the index's chunks"


def _written_questions(
    index: Path, context: Any, existing: list[Question], tries: int, seed: int
) -> Any:
    """Model-written questions that pass the checks, with retrieval over the index
    (its default top k) deciding whether a question finds its source chunk."""
    from ragtune.eval.compare.arms import chat_generator, index_chunks
    from ragtune.eval.questions_from_docs import QUESTION_TOKENS, Chunk, llm_questions
    from ragtune.index.vector_index import VectorStoreIndex
    from ragtune.llm.factory import load_llm

    model = context.shared.get("llm") or load_llm(context.llm)
    context.shared["llm"] = model
    loaded = VectorStoreIndex.load(index)
    retriever = loaded.as_retriever()

    def finds_source(question: str, chunk: Chunk) -> bool:
        try:
            found = retriever.retrieve(question)
        except RagtuneError:  # a question the retriever refuses (too long) finds nothing
            return False
        return any(
            hit.node.metadata.get("url") == chunk.url and hit.node.text == chunk.text
            for hit in found
        )

    try:
        chunks = index_chunks(index)
        generate = chat_generator(model, QUESTION_TOKENS)
        return llm_questions(chunks, generate, finds_source, existing, tries, seed)
    finally:
        loaded.close()


def _save_questions(output: Path, answerable: list[Question], declined: list[Question]) -> None:
    from ragtune.atomic import write_json_atomic
    from ragtune.eval.squad import squad_json

    output.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output / "questions.json", squad_json(answerable))
    if declined:
        write_json_atomic(output / "unanswerable.json", squad_json(declined))


@contextlib.contextmanager
def _arm_progress() -> Any:
    """One progress bar per arm, each opened when the arm asks its first question."""
    from ragtune.cli.progress import count_progress

    with contextlib.ExitStack() as stack:
        current: dict[str, Any] = {}

        def progress(route: str, done: int, total: int) -> None:
            if current.get("route") != route:
                stack.close()
                current["route"] = route
                current["hook"] = stack.enter_context(count_progress(f"Answering ({route})", total))
            current["hook"](done, total)

        yield progress


def rag_freshness(asked: list[Question], llm: Any) -> dict[str, Any]:
    """Seconds from an edited fact to RAG answering with it: one question's source
    text is written to a one-page folder and indexed; the fact is changed in the file;
    the clock runs over ``sync`` and asking the question again."""
    from ragtune import VectorStoreIndex
    from ragtune.eval.answers import contains_answer
    from ragtune.ingest import IngestSettings, ingest
    from ragtune.sync import sync

    question = next(
        (q for q in asked if re.search(r"\d", q.answers[0]) and q.answers[0] in q.context), None
    )
    question = question or next((q for q in asked if q.answers[0] in q.context), None)
    if question is None:
        return {"seconds": None, "how": "no question's answer appears in its source text"}
    old = question.answers[0]
    new = _changed(old)
    with tempfile.TemporaryDirectory(prefix="ragtune-freshness-") as scratch:
        folder, index_dir = Path(scratch) / "pages", Path(scratch) / "index"
        folder.mkdir()
        page = folder / "page.md"
        page.write_text(question.context, encoding="utf-8")
        ingest([str(folder)], index_dir, IngestSettings())
        page.write_text(question.context.replace(old, new), encoding="utf-8")
        started = time.perf_counter()
        sync(index_dir)
        response = (
            VectorStoreIndex.load(index_dir).as_query_engine(llm=llm).query(question.question)
        )
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "how": "edit one fact in a one-page copy of its source, sync, ask again",
        "question": question.question,
        "old": old,
        "new": new,
        "answer": response.response,
        "answered_new_fact": contains_answer(response.response, [new]),
    }


def _changed(value: str) -> str:
    """``value`` with a different fact in it: its first number plus 7, else a new name."""
    match = re.search(r"\d+", value)
    if match:
        return f"{value[: match.start()]}{int(match[0]) + 7}{value[match.end() :]}"
    return "Zanzibar Quillfeather"
