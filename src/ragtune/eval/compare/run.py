"""One comparison: the same questions asked of every arm, each arm measured and scored.

Pipeline, top to bottom (``run_comparison``):

1. the questions: the user's (``--qa``) or made from the index's chunks
   (``questions_from_docs``), plus unanswerable ones; written beside the results
   (``questions.json``, ``unanswerable.json``) so a resumed run asks the same ones;
2. for each arm, in ``ROUTES`` order: its share of the time still left
   (``budget.allocate``); skipped, with its estimate, when it does not fit beside
   the others; else prepared (measured: wall, CPU, peak memory, tokens), asked every
   question (per-question latency), scored (``eval.answers``) with bootstrap 95%
   intervals, timed for freshness (``freshness``, where the caller gives a probe), and
   priced at scale (``scale.py``, ``ragtune estimate``);
   hard stops keep the whole within the budget: a training run still going when its
   share less its questions is used is stopped and its last checkpoint kept
   (``arms.py``), and no question is asked once the whole budget is spent (the
   questions answered are scored, the rest counted as not asked);
3. ``results.json`` rewritten atomically after every arm, so an interrupted run
   resumed with ``resume=True`` skips the arms already done.

The reports (``report.py``) are written from ``results.json`` once every arm is done.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.atomic import write_json_atomic
from ragtune.documents import Response
from ragtune.errors import RagtuneError
from ragtune.eval.answers import contains_answer, evaluate_answers, summarise
from ragtune.eval.compare.arms import PREPARE, ArmStopped, Context, index_chunks
from ragtune.eval.compare.budget import (
    ADAPTER_OF,
    DROP_ORDER,
    TRAINING,
    WEIGHTS,
    ArmCosts,
    allocate,
    minimum_seconds,
    question_seconds,
)
from ragtune.eval.compare.measure import Meter, bootstrap_interval
from ragtune.eval.compare.scale import Scale, check_scale, estimate_arm, write_corpus
from ragtune.eval.questions_from_docs import sentences
from ragtune.eval.squad import Question

RESULTS = "results.json"
RESULTS_VERSION = 1
BUDGET_RULE = (
    "each arm's smallest run is estimated; while the estimates exceed the time left, arms "
    f"are dropped in the order {', '.join(DROP_ORDER)}; the rest is shared by the "
    "training arms by weight "
    f"({', '.join(f'{k} {v:g}' for k, v in WEIGHTS.items() if k in TRAINING)}) "
    "as more steps; the split is redone before each arm from the time really left; "
    "a training run still going when its share (less its questions) is used is stopped "
    "and its last checkpoint kept"
)
FINE_TUNED = ("lora", "lora+rag", "lora-aug", "lora-aug+rag", "pretrain")
UNTRAINED = ("base", "rag")

# (route, the questions, the prepared arm's engine factory) -> freshness record
FreshnessProbe = Callable[[list[Question]], dict[str, Any]]
Progress = Callable[[str, int, int], None]


@dataclass
class Plan:
    index_dir: Path
    output: Path
    routes: list[str]
    budget_s: float
    answerable: list[Question]
    unanswerable: list[Question]
    question_source: str  # "generated" or the --qa file
    context: Context
    costs: ArmCosts = field(default_factory=ArmCosts)
    rag_freshness: FreshnessProbe | None = None
    # What each arm is priced on at scale (``scale.py``); None: no at-scale row.
    scale: Scale | None = field(default_factory=Scale)
    # How the questions were made (templated, and model-written kept/dropped).
    question_stats: dict[str, Any] = field(default_factory=dict)
    # Seconds of the budget spent before the arms (making questions with the model).
    spent_before_s: float = 0.0
    # When the whole budget is spent (``context.clock`` time): no question is asked
    # after it. Set by ``run_comparison`` before each arm.
    budget_end: float | None = None


def question_key(questions: list[Question]) -> str:
    ids = "\n".join(f"{q.id}\t{q.question}" for q in questions)
    return hashlib.sha256(ids.encode()).hexdigest()[:16]


def check_fits(plan: Plan) -> None:
    """Raise unless the cheapest selected arm's smallest run fits in the whole budget."""
    count = len(plan.answerable) + len(plan.unanswerable)
    needs = {route: minimum_seconds(route, count, plan.costs) for route in plan.routes}
    cheapest = min(needs, key=lambda route: needs[route])
    if needs[cheapest] > plan.budget_s:
        raise RagtuneError(
            f"budget {plan.budget_s:.0f}s is too small for any arm: the cheapest, "
            f"{cheapest}, needs about {needs[cheapest]:.0f}s for {count} questions"
        )


def load_previous(plan: Plan) -> dict[str, Any]:
    """The finished arms of an earlier run into the same directory, checked to be a run
    of the same index and questions."""
    path = plan.output / RESULTS
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise RagtuneError(f"{path}: not JSON; remove it or use --overwrite") from None
    key = question_key(plan.answerable + plan.unanswerable)
    if not isinstance(data, dict) or data.get("questions", {}).get("key") != key:
        raise RagtuneError(f"{path}: an earlier run asked other questions; use --overwrite")
    arms = data.get("arms", {})
    if not plan.question_stats and "generation" in data["questions"]:
        plan.question_stats["generation"] = data["questions"]["generation"]  # as made then
    return {name: arm for name, arm in arms.items() if arm.get("status") == "done"}


def run_comparison(
    plan: Plan, resume: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    check_fits(plan)
    plan.output.mkdir(parents=True, exist_ok=True)
    plan.context.work_dir.mkdir(parents=True, exist_ok=True)
    done = load_previous(plan) if resume else {}
    questions = plan.answerable + plan.unanswerable
    results: dict[str, Any] = {
        "version": RESULTS_VERSION,
        "index": str(plan.index_dir),
        "budget_s": plan.budget_s,
        "budget_rule": BUDGET_RULE,
        "routes": plan.routes,
        "questions": {
            "source": plan.question_source,
            "answerable": len(plan.answerable),
            "unanswerable": len(plan.unanswerable),
            "key": question_key(questions),
            "held_out": "questions never enter training data; the documents (facts) do",
            "items": {q.id: {"source": q.title, "evidence": evidence(q)} for q in plan.answerable},
            **plan.question_stats,
        },
        "scale": check_scale(plan.scale) if plan.scale is not None else None,
        "arms": dict(done),
    }
    plan.context.held_out = [(q.question, list(q.answers)) for q in questions]
    for source in ADAPTER_OF.values():  # resumed: a "+rag" arm reuses the saved adapter
        notes = done.get(source, {}).get("notes", {})
        if "adapter" in notes and "base" in notes:
            adapter = (Path(notes["base"]), Path(notes["adapter"]))
            plan.context.shared[f"adapter:{source}"] = adapter
    started = time.perf_counter()
    spent_before = plan.spent_before_s + sum(arm.get("elapsed_s", 0.0) for arm in done.values())
    for position, route in enumerate(plan.routes):
        if route in done:
            continue
        remaining = plan.budget_s - spent_before - (time.perf_counter() - started)
        left = [name for name in plan.routes[position:] if name not in done]
        needs = {name: minimum_seconds(name, len(questions), plan.costs) for name in left}
        shares = allocate(left, max(remaining, 0.0), needs)
        trained = ADAPTER_OF.get(route)
        if trained and results["arms"].get(trained, {}).get("status") != "done":
            reason = f"route {trained} did not finish: no adapter"
            arm = _skipped(route, 0.0, needs[route], reason)
        elif route not in shares:
            arm = _skipped(
                route, 0.0, needs[route], f"does not fit the {remaining:.0f}s left with the others"
            )
        else:
            plan.context.seconds = shares[route]
            plan.context.training_stop_at = _training_stop(route, plan, shares[route])
            plan.budget_end = plan.context.clock() + remaining
            arm = _run_arm(route, plan, shares[route], progress)
        if arm["status"] != "done" and route in UNTRAINED and plan.scale is not None:
            # Priced from the corpus alone, run or not: what it would need at scale.
            arm["estimate"] = estimate_arm(route, arm, plan.scale, lambda: _corpus(plan))
        results["arms"][route] = arm
        write_json_atomic(plan.output / RESULTS, results)
    results["elapsed_s"] = spent_before + time.perf_counter() - started
    _time_to_freshness(results)
    write_json_atomic(plan.output / RESULTS, results)
    return results


def _skipped(route: str, arm_share: float, need: float, reason: str) -> dict[str, Any]:
    return {
        "route": route,
        "status": "skipped",
        "reason": reason,
        "share_s": arm_share,
        "estimated_need_s": need,
        "estimate": None,
    }


def _run_arm(route: str, plan: Plan, arm_share: float, progress: Progress | None) -> dict[str, Any]:
    arm_started = time.perf_counter()
    try:
        with Meter() as meter:
            prepared = PREPARE[route](plan.context)
        meter.cost.tokens = prepared.tokens
        engine = _Recording(prepared.engine, plan.budget_end, plan.context.clock)
        evaluation = evaluate_answers(
            engine,
            plan.answerable,
            plan.unanswerable,
            progress=(lambda n, total: progress(route, n, total)) if progress else None,
            label=route,
        )
    except Exception as error:  # one arm's failure is reported; the others still run
        text = str(error).splitlines()[0] if str(error) else ""
        if not isinstance(error, RagtuneError):
            text = f"{type(error).__name__}: {text}"
        return {
            "route": route,
            "status": "stopped" if isinstance(error, ArmStopped) else "failed",
            "reason": text,
            "share_s": arm_share,
            "elapsed_s": time.perf_counter() - arm_started,
            "estimate": None,
        }
    records, sources, scores = evaluation.records, engine.sources, evaluation.scores
    unasked = engine.asked.count(False)
    if unasked:  # the budget ran out while it answered: what it answered is scored
        kept = [i for i, asked in enumerate(engine.asked) if asked]
        records, sources = [records[i] for i in kept], [sources[i] for i in kept]
        if not records:
            return _skipped(route, arm_share, 0.0, "the budget ran out before its first answer")
        scores = summarise(records, route)
    answerable = [r for r in records if r.answerable]
    unanswerable = [r for r in records if not r.answerable]
    answer_tokens = 0
    if prepared.count_tokens is not None:
        answer_tokens = sum(
            prepared.count_tokens(r.question) + prepared.count_tokens(r.answer) for r in records
        )
    arm: dict[str, Any] = {
        "route": route,
        "status": "done",
        "share_s": arm_share,
        "preparation": meter.cost.to_dict(),
        "answer_tokens": answer_tokens,
        "scores": scores.to_dict(),
        "intervals": {
            "contains": bootstrap_interval([float(r.contains) for r in answerable]),
            "f1": bootstrap_interval([r.f1 for r in answerable]),
            "abstention": bootstrap_interval([float(r.abstained) for r in unanswerable]),
        },
        "latency_s": [r.seconds for r in records],
        "answers": [
            {**r.to_dict(), "sources": sources} for r, sources in zip(records, sources, strict=True)
        ],
        "notes": prepared.notes,
        "freshness": None,
    }
    if unasked:
        arm["stopped_at_budget"] = True
        arm["unasked"] = unasked
        prepared.notes["stopped"] = (
            f"the budget ran out while it answered; questions not asked: {unasked}"
        )
    if route == "rag" and plan.rag_freshness is not None and not unasked:
        try:
            arm["freshness"] = plan.rag_freshness(plan.answerable)
        except RagtuneError as error:
            arm["freshness"] = {"seconds": None, "how": f"failed: {error}"}
    if prepared.notes.get("stopped_at_budget"):
        arm["stopped_at_budget"] = True
    if plan.scale is not None:
        arm["estimate"] = estimate_arm(route, arm, plan.scale, lambda: _corpus(plan))
    arm["elapsed_s"] = time.perf_counter() - arm_started
    return arm


def _training_stop(route: str, plan: Plan, share: float) -> float | None:
    """When a training arm's run must stop for its questions (and reloading its last
    checkpoint) to fit in its share; None for the arms that do not train."""
    if route not in TRAINING:
        return None
    count = len(plan.answerable) + len(plan.unanswerable)
    reserved = question_seconds(route, count, plan.costs) + plan.costs.model_load_s
    return plan.context.clock() + share - reserved


def _corpus(plan: Plan) -> Path:
    """The index's documents as files, written once, for rag's ingest at scale."""
    folder = plan.context.work_dir / "corpus"
    if not folder.is_dir():
        chunks = index_chunks(plan.index_dir)
        write_corpus([(chunk.url, chunk.text) for chunk in chunks], folder)
    return folder


class _Recording:
    """An engine that keeps the URLs each answer drew on, for the report's evidence, and
    asks nothing more once the comparison's budget is spent (``stop_at`` on ``clock``):
    those questions are marked not asked."""

    def __init__(
        self,
        engine: Any,
        stop_at: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._engine = engine
        self._stop_at = stop_at
        self._clock = clock
        self.sources: list[list[str]] = []
        self.asked: list[bool] = []

    def query(self, question: str) -> Response:
        if self._stop_at is not None and self._clock() >= self._stop_at:
            self.asked.append(False)
            self.sources.append([])
            return Response(response="", metadata={"not_asked": True})
        self.asked.append(True)
        response: Response = self._engine.query(question)
        urls = [str(node.node.metadata.get("url", "")) for node in response.source_nodes]
        self.sources.append(list(dict.fromkeys(url for url in urls if url)))
        return response


def evidence(question: Question) -> str:
    """The first sentence of the question's source that holds a gold answer as whole
    words ("50" is not in "$17.50"); empty when none does."""
    found = [s for s in sentences(question.context) if contains_answer(s, question.answers)]
    return found[0] if found else ""


def _time_to_freshness(results: dict[str, Any]) -> None:
    """A fine-tuned arm learns a changed fact only by training again: its time to
    freshness is its measured preparation (a "+rag" arm: its adapter's, as it reuses it)."""
    arms = results["arms"]
    for route in FINE_TUNED:
        arm = arms.get(route)
        if not arm or arm.get("status") != "done":
            continue
        source = arms[ADAPTER_OF[route]] if route in ADAPTER_OF else arm
        seconds = source["preparation"]["wall_s"]
        arm["freshness"] = {
            "seconds": seconds,
            "how": "retraining on the changed documents (its measured preparation time)",
        }
    base = arms.get("base")
    if base and base.get("status") == "done":
        base["freshness"] = {"seconds": None, "how": "never: the base model cannot learn it"}
