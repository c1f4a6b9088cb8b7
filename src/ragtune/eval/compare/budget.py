"""The time budget of a comparison: parsed strictly, and shared out among the arms.

**The rule** (``allocate``). Every arm's smallest run is estimated (``ArmCosts``:
model load, its questions, the fewest training steps worth taking). While the
estimates add up to more than the budget, arms are dropped in ``DROP_ORDER``
(the +rag arms, pretrain, the LoRA arms, base, rag: the baselines last), and an arm
dropped on the way that fits beside the rest is taken back; a dropped arm is reported
with its estimate. What is left over is shared among the kept training arms by weight
(``WEIGHTS``) and buys them more steps (``training_steps``); with no training arm kept
it is slack. The split is made again before each arm from the time really left, so
an arm that runs short or long moves the others' shares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragtune.errors import RagtuneError

# The order arms run in and the report's columns: plain and augmented LoRA side by side.
ROUTES = ("base", "rag", "lora", "lora-aug", "lora+rag", "lora-aug+rag", "pretrain")
# What runs when --routes is not given: every route but lora-aug+rag, which adds little
# beside lora+rag and costs the slowest questions of all (PyTorch generation over RAG prompts).
DEFAULT_ROUTES = ("base", "rag", "lora", "lora-aug", "lora+rag", "pretrain")
WEIGHTS = {
    "base": 1.0,
    "rag": 2.0,
    "lora": 4.0,
    "lora+rag": 2.0,
    "lora-aug": 4.0,
    "lora-aug+rag": 2.0,
    "pretrain": 3.0,
}
# The arm whose adapter a "+rag" arm answers with.
ADAPTER_OF = {"lora+rag": "lora", "lora-aug+rag": "lora-aug"}
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
    names raise RagtuneError. A "+rag" arm needs the arm it takes its adapter from."""
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
    for combined, trained in ADAPTER_OF.items():
        if combined in names and trained not in names:
            raise RagtuneError(
                f"route {combined} needs route {trained} too (it uses {trained}'s adapter)"
            )
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
        "lora-aug": costs.transformers_question_s,
        "lora-aug+rag": costs.rag_transformers_question_s,
        "pretrain": costs.closed_book_question_s / 3,
    }[route]
    extra = costs.freshness_rag_s if route == "rag" else 0.0
    return costs.model_load_s + per * questions + extra


def minimum_seconds(route: str, questions: int, costs: ArmCosts) -> float:
    """The least an arm can be run in: its questions plus the smallest training run."""
    lora = costs.min_lora_steps * costs.lora_step_s + costs.model_load_s
    training = {
        "lora": lora,
        "lora-aug": lora,
        "pretrain": costs.min_pretrain_steps * costs.pretrain_step_s,
    }.get(route, 0.0)
    return question_seconds(route, questions, costs) + training


TRAINING = ("lora", "lora-aug", "pretrain")
# Which arm goes first when they do not all fit: the comparison's baselines (RAG and
# the base model) last, plain LoRA (the literature's usual fine-tuning) after the
# augmented one. A "+rag" arm goes before the arm whose adapter it needs.
DROP_ORDER = ("lora-aug+rag", "lora+rag", "pretrain", "lora-aug", "lora", "base", "rag")


def allocate(routes: list[str], budget_s: float, needs: dict[str, float]) -> dict[str, float]:
    """Each kept route's share of ``budget_s`` (see the module docstring); a route
    left out of the answer does not fit."""
    kept = list(routes)
    dropped: list[str] = []
    while kept and sum(needs[route] for route in kept) > budget_s:
        dropped.append(next(route for route in DROP_ORDER if route in kept))
        kept.remove(dropped[-1])
    # A smaller arm dropped before a bigger one may fit beside the rest: taken back, the
    # last dropped first (a "+rag" arm only beside the arm whose adapter it needs).
    for route in reversed(dropped[:-1]):
        fits = sum(needs[name] for name in kept) + needs[route] <= budget_s
        if fits and ADAPTER_OF.get(route, route) in kept + [route]:
            kept.append(route)
    kept = [route for route in routes if route in kept]
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
    if route in ("lora", "lora-aug"):
        return max(costs.min_lora_steps, int((left - costs.model_load_s) / costs.lora_step_s))
    return max(costs.min_pretrain_steps, int(left / costs.pretrain_step_s))
