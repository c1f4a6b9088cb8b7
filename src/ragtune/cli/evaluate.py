"""Commands under ``ragtune eval``: measure retrieval quality and speed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ragtune.cli.options import IndexOption, JsonOption, ModeOption
from ragtune.cli.progress import count_progress
from ragtune.terminal import out


def eval_retrieval_command(
    qa: Annotated[Path, typer.Option("--qa", help="Questions in SQuAD v1.1 JSON.")],
    index: IndexOption,
    mode: ModeOption = "hybrid",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Recall@1/5/10, MRR and latency p50/p95 of retrieval on a SQuAD-format question file.

    Example: ragtune eval retrieval --qa xquad.en.json --index ./idx --json
    """
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
