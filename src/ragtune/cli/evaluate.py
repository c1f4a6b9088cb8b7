"""Commands under ``ragtune eval``: measure retrieval and answers, quality and speed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ragtune.atomic import write_text_atomic
from ragtune.cli.options import (
    AnswerModeOption,
    GroundingOption,
    IndexOption,
    JsonOption,
    ModeOption,
)
from ragtune.cli.progress import count_progress
from ragtune.errors import RagtuneError
from ragtune.terminal import out

if TYPE_CHECKING:
    from ragtune.eval.answers import AnswerScores
    from ragtune.eval.squad import Question


def eval_retrieval_command(
    qa: Annotated[Path, typer.Option("--qa", help="Questions in SQuAD v1.1 JSON.")],
    index: IndexOption,
    mode: ModeOption = "hybrid",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Recall@1/5/10, MRR and latency p50/p95 of retrieval on a SQuAD-format question file."""
    from ragtune.eval.retrieval import evaluate_retrieval
    from ragtune.eval.squad import load_squad
    from ragtune.index.vector_index import VectorStoreIndex

    questions = load_squad(qa)[:limit]
    loaded = VectorStoreIndex.load(index)
    with count_progress("Asking", total=len(questions)) as on_count:
        scores = evaluate_retrieval(loaded, questions, mode=mode, progress=on_count)
    if as_json:
        out.print_data(scores.to_dict())
        return
    recall = "  ".join(f"recall@{k} {value:.3f}" for k, value in scores.recall.items())
    out.print(
        f"{scores.questions} questions, {mode} retrieval: {recall}  MRR {scores.mrr:.3f}  "
        f"latency p50 {scores.latency_p50_ms:.1f} ms, p95 {scores.latency_p95_ms:.1f} ms",
    )


def eval_answers_command(
    qa: Annotated[Path, typer.Option("--qa", help="Answerable questions in SQuAD v1.1 JSON.")],
    index: IndexOption,
    llm: Annotated[
        str | None,
        typer.Option(help="The model, as for ask (default: bundled SmolLM2)."),
    ] = None,
    answer: AnswerModeOption = None,
    grounding: GroundingOption = "strict",
    unanswerable: Annotated[
        Path | None,
        typer.Option(
            help="Questions the index cannot answer (SQuAD JSON from articles it does not "
            "hold): the engine should decline them."
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="Only the first N questions of each file."),
    ] = None,
    as_json: JsonOption = False,
    markdown: Annotated[
        Path | None, typer.Option(help="Also write the summary as a Markdown table here.")
    ] = None,
) -> None:
    """Exact match, token F1, contains, faithfulness, citation precision, abstention and
    latency of the answers to a SQuAD-format question file.

    For honest unanswerable questions, index some articles and pass another article's
    questions as --unanswerable (``ragtune.eval.squad.split_by_article`` splits a file).
    """
    from ragtune import VectorStoreIndex  # with the query engine registered
    from ragtune.eval.answers import evaluate_answers, scores_table
    from ragtune.eval.squad import load_squad
    from ragtune.llm import load_llm

    answerable = load_squad(qa)[:limit]
    declined = load_squad(unanswerable)[:limit] if unanswerable is not None else []
    _check_apart(answerable, declined)
    if markdown is not None and not markdown.parent.is_dir():
        raise RagtuneError(f"{markdown.parent}: no such directory for --markdown")
    if markdown is not None and markdown.is_dir():
        raise RagtuneError(f"{markdown}: is a directory, not a file for --markdown")
    loaded = VectorStoreIndex.load(index)
    model = load_llm(llm) if llm is not None else None  # a bad --llm fails before any question
    # No --answer: the engine's default for this model, as ``ask`` has it.
    engine = loaded.as_query_engine(llm=model, answer_mode=answer, grounding=grounding)
    if engine.answer_mode != "extract":
        # Load the weights now, so the first question's latency is answering, not loading.
        engine.llm.chat([{"role": "user", "content": "Hello"}], max_tokens=1)
    label = f"{engine.answer_mode} answers, {grounding} grounding"
    with count_progress("Answering", total=len(answerable) + len(declined)) as on_count:
        evaluation = evaluate_answers(engine, answerable, declined, on_count, label)
    if markdown is not None:
        write_text_atomic(markdown, scores_table([evaluation.scores]))
    if as_json:
        out.print_data(evaluation.to_dict())
        return
    _print_scores(evaluation.scores)


def _check_apart(answerable: list[Question], declined: list[Question]) -> None:
    """Refuse unanswerable questions that share an article or an id with answerable ones:
    the index was built for the answerable file, so it would hold their answers."""
    shared_titles = {q.title for q in answerable if q.title} & {q.title for q in declined}
    if shared_titles:
        title = sorted(shared_titles)[0]
        raise RagtuneError(
            f"--unanswerable shares article {title!r} with --qa: use questions from "
            "articles the index does not hold"
        )
    shared_ids = {q.id for q in answerable} & {q.id for q in declined}
    if shared_ids:
        raise RagtuneError(f"--unanswerable repeats question {sorted(shared_ids)[0]!r} of --qa")


def _print_scores(scores: AnswerScores) -> None:
    from rich.table import Table

    from ragtune.eval.answers import COLUMNS

    table = Table(title=scores.label, show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, show in COLUMNS:
        table.add_row(name, show(scores))
    out.print(table)
