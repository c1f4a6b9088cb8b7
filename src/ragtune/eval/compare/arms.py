"""The routes being compared, each as an arm: prepare it (train, load), then answer.

An arm's ``prepare`` returns a ``Prepared``: something with ``query(question)`` that
answers as a query engine does, the tokens processed getting there, and notes for
the report (training steps, losses, where the model was written). Arms are built
from the existing APIs:

- ``base``: the model alone, closed book (the user's question through its chat template);
- ``rag``: the index's query engine (``VectorStoreIndex.load(dir).as_query_engine()``);
- ``lora``: LoRA continued training on the index's chunks
  (``ragtune.train.run.train`` with ``from_index``), then closed book with the adapter;
- ``lora+rag``: the same adapter as the query engine's model;
- ``pretrain``: a small model trained from scratch on the index's chunks
  (``ragtune.train.pretrain``), asked by continuing the question as text.

The query engine comes from the layer above ``eval/`` and is passed in
(``Context.query_engine``), as the CLI's ``eval answers`` passes its engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.documents import Response
from ragtune.eval.answers import AnswerEngine
from ragtune.eval.compare.budget import ArmCosts, training_steps

ANSWER_TOKENS = 64
# A character tokenizer: a BPE vocabulary needs more text than one site's pages hold.
PRETRAIN_DEFAULTS: dict[str, Any] = {"size": "1m", "tokenizer": "char", "eval_every": None}
# A closed-book answer that says it does not know counts as declining.
_DECLINES = re.compile(
    r"\b(i (?:do not|don't) know|i'm not sure|i am not sure|no information|cannot answer|"
    r"can't answer|not (?:able|sure) to)\b",
    re.IGNORECASE,
)

# (index_dir, llm or None for the default) -> a query engine over the index
QueryEngineFactory = Callable[[Path, Any], AnswerEngine]


@dataclass
class Context:
    """What every arm may use."""

    index_dir: Path
    work_dir: Path  # the arms' own files (adapters, models): REPORT_DIR/runs
    questions: int
    costs: ArmCosts
    query_engine: QueryEngineFactory
    base_model: str | None = None  # training base (None: the bundled SmolLM2)
    llm: str | None = None  # the closed-book and RAG model spec (None: bundled GGUF)
    seconds: float = 0.0  # this arm's share of the budget, set before each arm
    max_steps: int | None = None  # a cap on training steps, whatever the share allows
    # PretrainConfig settings over PRETRAIN_DEFAULTS (a smaller model for tests)
    pretrain_settings: dict[str, Any] = field(default_factory=dict)
    # What one arm leaves for a later one (lora's adapter for lora+rag).
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prepared:
    engine: AnswerEngine
    tokens: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    # Tokens an answer cost, from the question, its response: for the report.
    count_tokens: Callable[[str], int] | None = None


class ClosedBook:
    """A model asked the question alone, with no sources: ``query`` as an engine."""

    def __init__(self, generate: Callable[[str], str]) -> None:
        self._generate = generate

    def query(self, question: str) -> Response:
        answer = self._generate(question)
        return Response(
            response=answer,
            metadata={"closed_book": True, "not_in_sources": bool(_DECLINES.search(answer))},
        )


def chat_generator(llm: Any) -> Callable[[str], str]:
    def generate(question: str) -> str:
        return str(llm.chat([{"role": "user", "content": question}], max_tokens=ANSWER_TOKENS))

    return generate


def prepare_base(context: Context) -> Prepared:
    from ragtune.llm.factory import load_llm

    llm = load_llm(context.llm)
    _warm(llm)
    context.shared["llm"] = llm
    return Prepared(ClosedBook(chat_generator(llm)), count_tokens=llm.count_tokens)


def prepare_rag(context: Context) -> Prepared:
    """The index was built before the comparison; its chunks are embedded again here,
    the bulk of an ingest's work, so RAG's preparation is measured like the others'."""
    from ragtune.index.vector_index import VectorStoreIndex

    llm = context.shared.get("llm")
    if llm is None:
        from ragtune.llm.factory import load_llm

        llm = context.shared["llm"] = load_llm(context.llm)
        _warm(llm)
    index = VectorStoreIndex.load(context.index_dir)
    try:
        texts = [row[3] for row in index.store.chunk_texts()]
        for start in range(0, len(texts), 32):
            index.embedder.embed(texts[start : start + 32])
        tokens = sum(index.embedder.count_tokens(text) for text in texts)
    finally:
        index.close()
    return Prepared(
        context.query_engine(context.index_dir, llm),
        tokens=tokens,
        notes={"chunks_embedded": len(texts)},
        count_tokens=llm.count_tokens,
    )


def prepare_lora(context: Context) -> Prepared:
    from ragtune.llm.transformers_backend import TransformersLLM
    from ragtune.train.config import build_config
    from ragtune.train.run import train

    steps = _steps("lora", context)
    output = context.work_dir / "lora"
    config = build_config(
        None,
        {
            # examples/recipes/knowledge-from-index.yaml, with the steps the share allows
            "method": "lora",
            "base": context.base_model,
            "from_index": str(context.index_dir),
            "output": str(output),
            "max_length": 256,
            "packing": True,
            "batch_size": 4,
            "epochs": 8.0,
            "max_steps": steps,
            "learning_rate": 1e-3,
            "lora_r": 32,
            "lora_alpha": 64,
            "lora_dropout": 0.0,
            "eval_fraction": 0.0,
            "save_every": 10_000,
        },
    )
    outcome = train(config, "sft", overwrite=True)
    context.shared["adapter"] = (outcome.base, outcome.saved)
    llm = TransformersLLM(outcome.base, adapter_dir=outcome.saved)
    _warm(llm)
    context.shared["lora_llm"] = llm
    result = outcome.result
    return Prepared(
        ClosedBook(chat_generator(llm)),
        tokens=int(result.tokens),
        notes={
            "steps": result.steps,
            "planned_steps": steps,
            "final_loss": result.final_loss,
            "loss_history": _losses(result.history),
            "adapter": str(outcome.saved),
            "base": str(outcome.base),
        },
        count_tokens=llm.count_tokens,
    )


def prepare_lora_rag(context: Context) -> Prepared:
    llm = context.shared.get("lora_llm")
    if llm is None:
        from ragtune.llm.transformers_backend import TransformersLLM

        base, adapter = context.shared["adapter"]
        llm = TransformersLLM(base, adapter_dir=adapter)
        _warm(llm)
    return Prepared(context.query_engine(context.index_dir, llm), count_tokens=llm.count_tokens)


def prepare_pretrain(context: Context) -> Prepared:
    from ragtune.train.pretrain.config import PretrainConfig
    from ragtune.train.pretrain.run import pretrain
    from ragtune.train.pretrain.sample import load_for_sampling, sample_text

    steps = _steps("pretrain", context)
    settings = {
        **PRETRAIN_DEFAULTS,
        "warmup_steps": min(100, steps // 10),
        **context.pretrain_settings,
        "from_index": str(context.index_dir),
        "output": str(context.work_dir / "pretrain"),
        "max_steps": steps,
    }
    config = PretrainConfig(**settings)
    outcome = pretrain(config, overwrite=True)
    model, tokenizer = load_for_sampling(outcome.saved)

    def generate(question: str) -> str:
        return sample_text(model, tokenizer, f"{question}\n", ANSWER_TOKENS, temperature=0)

    result = outcome.result
    return Prepared(
        ClosedBook(generate),
        tokens=int(result.tokens),
        notes={
            "steps": result.steps,
            "planned_steps": steps,
            "final_loss": result.final_loss,
            "loss_history": _losses(result.history),
            "model": str(outcome.saved),
        },
        count_tokens=lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]),
    )


PREPARE: dict[str, Callable[[Context], Prepared]] = {
    "base": prepare_base,
    "rag": prepare_rag,
    "lora": prepare_lora,
    "lora+rag": prepare_lora_rag,
    "pretrain": prepare_pretrain,
}


def _steps(route: str, context: Context) -> int:
    steps = training_steps(route, context.seconds, context.questions, context.costs)
    return min(steps, context.max_steps) if context.max_steps else steps


def _warm(llm: Any) -> None:
    """Load the weights now, so loading counts as preparation, not the first answer."""
    llm.chat([{"role": "user", "content": "Hello"}], max_tokens=1)


def _losses(history: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [
        (int(entry["step"]), float(entry["loss"]))
        for entry in history
        if "step" in entry and isinstance(entry.get("loss"), int | float)
    ]
