"""The time budget of a comparison: parsed strictly, and shared out among the arms.

**The rule** (``allocate``). Every arm's smallest run is estimated (``ArmCosts``:
model load, its questions, the fewest training steps worth taking). While the
estimates add up to more than the budget, arms are dropped in ``DROP_ORDER``
(lora+rag, pretrain, lora, base, rag: the baselines last); a dropped arm is reported
with its estimate. What is left over is shared among the kept training arms by weight
(``WEIGHTS``) and buys them more steps (``training_steps``); with no training arm kept
it is slack. The split is made again before each arm from the time really left, so
an arm that runs short or long moves the others' shares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragtune.errors import RagtuneError

ROUTES = ("base", "rag", "lora", "lora+rag", "pretrain")
WEIGHTS = {"base": 1.0, "rag": 2.0, "lora": 4.0, "lora+rag": 2.0, "pretrain": 3.0}
_BUDGET = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h)$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_budget(text: str) -> float:
    """``"90s"``, ``"20m"``, ``"1.5h"`` as seconds; anything else (no unit, a negative,
    zero, spaces) raises RagtuneError."""
    match = _BUDGET.match(text.strip().lower())
    if not match or float(match[1]) <= 0:
        raise RagtuneError(
            f"invalid budget {text!r}: give a positive number and a unit: 90s, 20m, 1h"
        )
    return float(match[1]) * _UNIT_SECONDS[match[2]]


def parse_routes(text: str) -> list[str]:
    """A comma list of routes, in the order ``ROUTES`` runs them; unknown or repeated
    names raise RagtuneError. ``lora+rag`` needs ``lora`` (its adapter)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ROUTES]
    if unknown or not names:
        raise RagtuneError(
            f"unknown route {unknown[0]!r}; choose from {', '.join(ROUTES)}"
            if unknown
            else f"no routes given; choose from {', '.join(ROUTES)}"
        )
    if len(set(names)) != len(names):
        raise RagtuneError(f"a route is named twice in {text!r}")
    if "lora+rag" in names and "lora" not in names:
        raise RagtuneError("route lora+rag needs route lora too (it uses lora's adapter)")
    return [name for name in ROUTES if name in names]


@dataclass(frozen=True)
class ArmCosts:
    """Rough seconds for planning, measured on a 2-core laptop with the bundled
    SmolLM2-135M; the report shows what each arm really took."""

    closed_book_question_s: float = 10.0  # llama.cpp, up to 64 answer tokens
    rag_question_s: float = 10.0  # prompt of ~1,000 tokens, then the answer
    transformers_question_s: float = 8.0  # PyTorch fp32 generation (adapter arms)
    rag_transformers_question_s: float = 25.0
    model_load_s: float = 20.0
    lora_step_s: float = 15.0  # 4 x 256 tokens through 135M parameters: 12 s measured
    min_lora_steps: int = 10
    pretrain_step_s: float = 0.5  # the 1m preset, 12 x 256 tokens: 0.38 s measured
    min_pretrain_steps: int = 50
    freshness_rag_s: float = 60.0  # ingest one page, edit it, sync, ask


def question_seconds(route: str, questions: int, costs: ArmCosts) -> float:
    """Estimated seconds to ask ``questions`` questions of an arm (model load included)."""
    per = {
        "base": costs.closed_book_question_s,
        "rag": costs.rag_question_s,
        "lora": costs.transformers_question_s,
        "lora+rag": costs.rag_transformers_question_s,
        "pretrain": costs.closed_book_question_s / 3,
    }[route]
    extra = costs.freshness_rag_s if route == "rag" else 0.0
    return costs.model_load_s + per * questions + extra


def minimum_seconds(route: str, questions: int, costs: ArmCosts) -> float:
    """The least an arm can be run in: its questions plus the smallest training run."""
    training = {
        "lora": costs.min_lora_steps * costs.lora_step_s + costs.model_load_s,
        "pretrain": costs.min_pretrain_steps * costs.pretrain_step_s,
    }.get(route, 0.0)
    return question_seconds(route, questions, costs) + training


TRAINING = ("lora", "pretrain")
# Which arm goes first when they do not all fit: the comparison's baselines (RAG and
# the base model) last. lora goes after lora+rag, which needs its adapter.
DROP_ORDER = ("lora+rag", "pretrain", "lora", "base", "rag")


def allocate(routes: list[str], budget_s: float, needs: dict[str, float]) -> dict[str, float]:
    """Each kept route's share of ``budget_s`` (see the module docstring); a route
    left out of the answer does not fit."""
    kept = list(routes)
    while kept and sum(needs[route] for route in kept) > budget_s:
        dropped = next(route for route in DROP_ORDER if route in kept)
        kept.remove(dropped)
    surplus = budget_s - sum(needs[route] for route in kept)
    weights = {route: WEIGHTS[route] for route in kept if route in TRAINING}
    total = sum(weights.values())
    return {
        route: needs[route] + (surplus * weights[route] / total if route in weights else 0.0)
        for route in kept
    }


def training_steps(route: str, seconds: float, questions: int, costs: ArmCosts) -> int:
    """How many optimizer steps fit in ``seconds`` once the questions are paid for."""
    left = seconds - question_seconds(route, questions, costs)
    if route == "lora":
        return max(costs.min_lora_steps, int((left - costs.model_load_s) / costs.lora_step_s))
    return max(costs.min_pretrain_steps, int(left / costs.pretrain_step_s))
