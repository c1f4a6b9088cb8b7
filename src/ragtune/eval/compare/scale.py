"""Each arm "at scale": what the same arm would cost with a bigger model on rented
hardware, from ``ragtune estimate`` (``ragtune.train.estimate.routes.estimate``).

- a **training** arm (lora, lora-aug, pretrain) is priced as the same run over the
  user's whole corpus (the index): the corpus's tokens as the arm counted them (its
  encoded records; pretrain's token file) times the arm's epochs (lora's recipe, 8;
  pretrain: the passes it made), with a ``Scale.params``-parameter model;
- **rag** is priced as its ingest of the whole corpus (the index's documents written
  out as Markdown, chunked and embedded as ``ragtune ingest`` would) and the cost of
  one question with the same model answering;
- a "+rag" arm is its adapter's training plus rag's serving: it points at both rows;
- **base** has nothing to prepare.

Whatever the estimator refuses (a route it cannot price yet, a shape it does not
know), or fails on, is kept as the row's ``error``, never raised: the comparison still
finishes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.errors import RagtuneError
from ragtune.eval.compare.budget import ADAPTER_OF

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmbt]?)$")
_SIZE_UNIT = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}
DEFAULT_MODEL = "7b"
DEFAULT_DEVICE = "a10g"


@dataclass(frozen=True)
class Scale:
    """The model and hardware an arm is priced on at scale."""

    params: float = 7e9
    device: str = DEFAULT_DEVICE
    gpus: int = 1
    price_per_hour: float | None = None  # None: the device profile's on-demand price

    def describe(self) -> str:
        return f"a {_count(self.params)}-parameter model on {self.gpus} x {self.device}"


def parse_model_size(text: str) -> float:
    """``"7b"``, ``"1.5B"``, ``"500m"`` or ``"7e9"`` as a parameter count."""
    cleaned = text.strip().lower()
    match = _SIZE.match(cleaned)
    try:
        value = float(match[1]) * _SIZE_UNIT[match[2]] if match else float(cleaned)
    except ValueError:
        value = math.nan
    if not (value >= 1e6 and math.isfinite(value)):
        raise RagtuneError(
            f"invalid --scale-model {text!r}: give a parameter count such as 7b, 1.5b, 7e9"
        )
    return value


def check_scale(scale: Scale) -> dict[str, Any]:
    """The hardware profile the scale names (raises a one-line error for an unknown
    device or a bad price), as the report shows it."""
    from ragtune.train.estimate.hardware import hardware

    where = hardware(scale.device, scale.gpus, None, scale.price_per_hour, measure=False)
    return {
        "model_parameters": scale.params,
        "device": where.name,
        "label": where.label,
        "gpus": where.devices,
        "price_per_hour": where.price_per_hour,
        "price_source": "given" if scale.price_per_hour is not None else "profile",
        "described": scale.describe(),
    }


def estimate_arm(
    route: str, arm: dict[str, Any], scale: Scale, corpus: Callable[[], Path]
) -> dict[str, Any]:
    """The at-scale row of one finished arm; ``corpus`` writes (once) and returns the
    folder of the index's documents that rag's ingest is priced on."""
    if route == "base":
        return {"summary": "nothing to prepare", "seconds": 0.0, "money": 0.0}
    if route in ADAPTER_OF:
        trained = ADAPTER_OF[route]
        return {"summary": f"{trained}'s training, then rag's ingest and questions"}
    try:
        if route == "rag":
            return _rag(scale, corpus())
        return _training(route, arm, scale)
    except Exception as error:  # a row the estimator cannot fill never stops the comparison
        reason = str(error).splitlines()[0] if str(error) else ""
        if not isinstance(error, RagtuneError):
            reason = f"{type(error).__name__}: {reason}"
        return {"error": reason, "summary": f"not estimated: {reason}"}


def _training(route: str, arm: dict[str, Any], scale: Scale) -> dict[str, Any]:
    from ragtune.train.estimate.routes import Request, estimate

    notes = arm.get("notes", {})
    corpus_tokens, epochs = notes.get("corpus_tokens"), notes.get("epochs")
    if not corpus_tokens or not epochs:
        raise RagtuneError("the arm did not record its corpus's tokens and epochs")
    tokens = max(1, round(corpus_tokens * epochs))
    method = "pretrain" if route == "pretrain" else "lora"
    # The arm's own recipe (batch, length, LoRA rank), every token once: the epochs are
    # already in ``tokens``. Pretraining's step count is a setting of its own (a default
    # of 2,000), so it is given to match the tokens.
    recipe = {k: v for k, v in notes.get("recipe", {}).items() if k not in ("method", "base")}
    settings: dict[str, Any] = recipe | {"epochs": 1.0, "max_steps": None}
    if method == "pretrain":
        settings["max_steps"] = _pretrain_steps(tokens)
    report = estimate(
        Request(
            route=method,
            params=scale.params,
            tokens=tokens,
            settings=settings,
            device=scale.device,
            gpus=scale.gpus,
            price_per_hour=scale.price_per_hour,
        )
    )
    seconds = float(report["seconds"]["total"])
    money = report.get("money")
    trained = report.get("trained_tokens", tokens)
    return {
        "estimator_route": method,
        "corpus_tokens": corpus_tokens,
        "epochs": epochs,
        "tokens": tokens,
        "trained_tokens": trained,
        "seconds": seconds,
        "money": money,
        "fits": report.get("fits"),
        "summary": f"train {_tokens(trained)} tokens: {_duration(seconds)}{_money(money)}"
        + ("" if report.get("fits", True) else " (does not fit in the device's memory)"),
    }


def _pretrain_steps(tokens: int) -> int:
    from ragtune.train.pretrain.config import PretrainConfig

    config = PretrainConfig()
    per_step = config.batch_size * config.grad_accum * config.shape().context
    return max(1, math.ceil(tokens / ((1 - config.val_fraction) * per_step)))


def _rag(scale: Scale, corpus: Path) -> dict[str, Any]:
    from ragtune.train.estimate.routes import Request, estimate

    report = estimate(
        Request(
            route="rag",
            data=[corpus],
            params=scale.params,
            device=scale.device,
            gpus=scale.gpus,
            price_per_hour=scale.price_per_hour,
        )
    )
    ingest = float(report["seconds"]["total"])
    question = float(report["rag"]["question_seconds"]["total"])
    price = report["hardware"].get("price_per_hour")
    per_question = price * question / 3600 if price is not None else None
    answering = int(report["model"]["parameters"])
    row: dict[str, Any] = {
        "estimator_route": "rag",
        "chunks": report["data"]["chunks"],
        "seconds": ingest,
        "money": report.get("money"),
        "question_seconds": question,
        "question_money": per_question,
        "answer_model_parameters": answering,
        "summary": f"ingest {report['data']['chunks']} chunks: {_duration(ingest)}"
        f"{_money(report.get('money'))}; a question {question:.2f} s{_money(per_question)}",
    }
    if abs(answering - scale.params) > 0.5 * scale.params:
        # The estimator priced the questions with another answering model than asked.
        row["note"] = (
            f"questions priced with a {_count(answering)}-parameter answering model: "
            "the estimator does not take a parameter count for rag"
        )
        row["summary"] += f" ({_count(answering)} answering model)"
    return row


def write_corpus(chunks: list[tuple[str, str]], folder: Path) -> Path:
    """The index's documents as Markdown files, one per URL (its chunks in order),
    published whole: an interrupted run leaves no half corpus for a resumed one."""
    from ragtune.atomic import StagedDirectory

    pages: dict[str, list[str]] = {}
    for url, text in chunks:
        pages.setdefault(url, []).append(text)
    with StagedDirectory(folder) as staging:
        for number, texts in enumerate(pages.values()):
            (staging / f"document-{number:05d}.md").write_text("\n\n".join(texts), "utf-8")
    return folder


def _count(value: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


def _tokens(value: float) -> str:
    return _count(value) if value >= 1e6 else f"{value:,.0f}"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _money(value: float | None) -> str:
    if value is None:
        return ""
    return f", ${value:.2f}" if value >= 0.01 else f", ${value:.2g}"
