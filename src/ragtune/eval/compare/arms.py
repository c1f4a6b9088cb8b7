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
- ``lora-aug``: LoRA on the chunks plus their facts restated many ways as chat records
  (``augment.py``; no record holds an evaluation question), closed book;
- ``lora-aug+rag``: that adapter as the query engine's model;
- ``pretrain``: a small model trained from scratch on the index's chunks
  (``ragtune.train.pretrain``), asked by continuing the question as text.

**The hard stop.** A training arm's step callback stops the run once its share of the
budget, less its questions, is used (``Context.training_stop_at``); the run is then
finished from its last checkpoint (resumed with ``max_steps`` at that step, so no more
steps run) and its notes say so (``stopped_at_budget``). Checkpoints are written
``CHECKPOINTS_PER_RUN`` times a run so little is lost.

The query engine comes from the layer above ``eval/`` and is passed in
(``Context.query_engine``), as the CLI's ``eval answers`` passes its engine.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.documents import Response
from ragtune.errors import RagtuneError
from ragtune.eval.answers import AnswerEngine
from ragtune.eval.compare.budget import ArmCosts, training_steps
from ragtune.eval.questions_from_docs import Chunk

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
    # The evaluation's (question, golds): never in a training record (lora-aug).
    held_out: list[tuple[str, list[str]]] = field(default_factory=list)
    # lora-aug asks the closed-book model to reword each fact sentence too.
    llm_paraphrases: bool = False
    # When a training arm must stop for its questions to fit in its share (``clock``
    # time, set before each arm; None: no stop).
    training_stop_at: float | None = None
    clock: Callable[[], float] = time.perf_counter


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


def chat_generator(llm: Any, max_tokens: int = ANSWER_TOKENS) -> Callable[[str], str]:
    def generate(question: str) -> str:
        return str(llm.chat([{"role": "user", "content": question}], max_tokens=max_tokens))

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


# examples/recipes/knowledge-from-index.yaml; max_steps comes from the arm's share.
LORA_RECIPE: dict[str, Any] = {
    "method": "lora",
    "max_length": 256,
    "packing": True,
    "batch_size": 4,
    "epochs": 8.0,
    "learning_rate": 1e-3,
    "lora_r": 32,
    "lora_alpha": 64,
    "lora_dropout": 0.0,
    "eval_fraction": 0.0,
}
# Checkpoints a training arm writes, so one stopped at its share keeps its last one.
CHECKPOINTS_PER_RUN = 8


class ArmStopped(RagtuneError):
    """An arm ran past its share of the budget before it had anything to keep."""


class _OutOfTime(Exception):
    """Raised from a training run's step callback once the arm's time is up."""


def prepare_lora(context: Context) -> Prepared:
    return _lora_arm("lora", context, data=None)


def prepare_lora_aug(context: Context) -> Prepared:
    """LoRA on the documents plus their facts restated many ways (``augment``), none of
    the records holding an evaluation question."""
    from ragtune.atomic import write_text_atomic
    from ragtune.eval.compare.augment import augment

    chunks = index_chunks(context.index_dir)
    paraphrase = None
    if context.llm_paraphrases:
        paraphrase = _paraphraser(context)
    made = augment(chunks, context.held_out, paraphrase)
    # Beside the run's directory, not in it: a run refuses inputs inside what it writes.
    data = context.work_dir / "lora-aug-records.jsonl"
    write_text_atomic(data, "".join(json.dumps(record) + "\n" for record in made.records))
    prepared = _lora_arm("lora-aug", context, data=data)
    prepared.notes["augmentation"] = made.summary()
    prepared.notes["augmentation_file"] = str(data)
    return prepared


def _lora_arm(route: str, context: Context, data: Path | None) -> Prepared:
    from ragtune.llm.transformers_backend import TransformersLLM
    from ragtune.train.config import build_config
    from ragtune.train.run import train

    steps = _steps(route, context)
    output = context.work_dir / route
    settings = {
        **LORA_RECIPE,
        "base": context.base_model,
        "from_index": str(context.index_dir),
        "output": str(output),
        "max_steps": steps,
        "save_every": max(1, steps // CHECKPOINTS_PER_RUN),
        "keep_checkpoints": 1,
    }
    if data is not None:
        settings["data"] = str(data)
    watch = _Watch(context, steps)
    try:
        outcome = train(build_config(None, settings), "sft", overwrite=True, on_step=watch)
    except _OutOfTime:
        kept = _kept_step(route, output, watch.steps)
        settings["max_steps"] = kept  # finish from the last checkpoint: no more steps
        outcome = train(build_config(None, settings), "sft", resume=True)
    context.shared[f"adapter:{route}"] = (outcome.base, outcome.saved)
    llm = TransformersLLM(outcome.base, adapter_dir=outcome.saved)
    _warm(llm)
    context.shared[f"llm:{route}"] = llm
    result = outcome.result
    notes = {
        "steps": result.steps,
        "planned_steps": steps,
        "final_loss": result.final_loss,
        "loss_history": _losses(result.history),
        "adapter": str(outcome.saved),
        "base": str(outcome.base),
        # What the same run would train on at scale: every record once an epoch.
        "corpus_tokens": int(outcome.encoding.tokens),
        "epochs": LORA_RECIPE["epochs"],
        "recipe": LORA_RECIPE,
    }
    tokens = int(result.tokens)
    if watch.stopped:
        # Packed batches hold about batch_size x max_length tokens a step.
        per_step = LORA_RECIPE["batch_size"] * LORA_RECIPE["max_length"]
        tokens = watch.steps * per_step
        notes |= watch.stop_notes(result.steps) | {"tokens_estimated": True}
    return Prepared(
        ClosedBook(chat_generator(llm)),
        tokens=tokens,
        notes=notes,
        count_tokens=llm.count_tokens,
    )


def prepare_lora_rag(context: Context) -> Prepared:
    return _adapter_with_rag("lora", context)


def prepare_lora_aug_rag(context: Context) -> Prepared:
    return _adapter_with_rag("lora-aug", context)


def _adapter_with_rag(trained: str, context: Context) -> Prepared:
    llm = context.shared.get(f"llm:{trained}")
    if llm is None:
        from ragtune.llm.transformers_backend import TransformersLLM

        base, adapter = context.shared[f"adapter:{trained}"]
        llm = TransformersLLM(base, adapter_dir=adapter)
        _warm(llm)
    return Prepared(context.query_engine(context.index_dir, llm), count_tokens=llm.count_tokens)


class _Watch:
    """A training run's step callback: counts steps and stops the run (``_OutOfTime``)
    once the arm's training must end for its questions to fit in its share. The last
    planned step is never stopped: the run saves its model right after it."""

    def __init__(self, context: Context, planned: int) -> None:
        self.clock = context.clock
        self.stop_at = context.training_stop_at
        self.planned = planned
        self.steps = 0
        self.stopped = False

    def __call__(self, record: dict[str, Any]) -> None:
        self.steps = int(record.get("step", self.steps + 1))
        if self.steps >= self.planned:
            return
        if self.stop_at is not None and self.clock() >= self.stop_at:
            self.stopped = True
            raise _OutOfTime

    def stop_notes(self, kept: int) -> dict[str, Any]:
        return {
            "stopped_at_budget": True,
            "steps_run": self.steps,
            "steps_kept": kept,
            "stopped": f"stopped at its share of the budget after step {self.steps}; "
            f"kept the checkpoint of step {kept}",
        }


def _kept_step(route: str, output: Path, ran: int) -> int:
    from ragtune.train.loop import checkpoints

    latest = checkpoints.load_latest(output)
    if latest is None:
        raise ArmStopped(
            f"{route} ran past its share of the budget after {ran} steps, before its first "
            "checkpoint: nothing to keep"
        )
    return latest.step


def prepare_pretrain(context: Context) -> Prepared:
    from ragtune.train.pretrain.config import PretrainConfig
    from ragtune.train.pretrain.run import pretrain
    from ragtune.train.pretrain.sample import load_for_sampling, sample_text

    steps = _steps("pretrain", context)
    settings = {
        **PRETRAIN_DEFAULTS,
        "warmup_steps": min(100, steps // 10),
        "save_every": max(1, steps // CHECKPOINTS_PER_RUN),
        "keep_checkpoints": 1,
        **context.pretrain_settings,
        "from_index": str(context.index_dir),
        "output": str(context.work_dir / "pretrain"),
        "max_steps": steps,
    }
    watch = _Watch(context, steps)
    try:
        outcome = pretrain(PretrainConfig(**settings), overwrite=True, on_step=watch)
    except _OutOfTime:
        kept = _kept_step("pretrain", context.work_dir / "pretrain", watch.steps)
        outcome = pretrain(PretrainConfig(**{**settings, "max_steps": kept}), resume=True)
    model, tokenizer = load_for_sampling(outcome.saved)

    def generate(question: str) -> str:
        return sample_text(model, tokenizer, f"{question}\n", ANSWER_TOKENS, temperature=0)

    result = outcome.result
    config = PretrainConfig(**settings)
    per_step = config.batch_size * config.grad_accum * config.shape().context
    corpus_tokens = int(outcome.summary.get("train_tokens") or 0)
    notes: dict[str, Any] = {
        "steps": result.steps,
        "planned_steps": steps,
        "final_loss": result.final_loss,
        "loss_history": _losses(result.history),
        "model": str(outcome.saved),
        "corpus_tokens": corpus_tokens,
        # Passes over the corpus the arm made: the same at scale.
        "epochs": result.steps * per_step / corpus_tokens if corpus_tokens else None,
    }
    tokens = int(result.tokens)
    if watch.stopped:
        tokens = watch.steps * per_step
        notes |= watch.stop_notes(result.steps)
    return Prepared(
        ClosedBook(generate),
        tokens=tokens,
        notes=notes,
        count_tokens=lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]),
    )


PREPARE: dict[str, Callable[[Context], Prepared]] = {
    "base": prepare_base,
    "rag": prepare_rag,
    "lora": prepare_lora,
    "lora+rag": prepare_lora_rag,
    "lora-aug": prepare_lora_aug,
    "lora-aug+rag": prepare_lora_aug_rag,
    "pretrain": prepare_pretrain,
}


def index_chunks(index_dir: Path) -> list[Chunk]:
    """The index's chunks in URL order (as ``train.run.index_records`` reads them)."""
    from ragtune.index.vector_index import VectorStoreIndex

    index = VectorStoreIndex.load(index_dir)
    try:
        rows = sorted(index.store.chunk_texts(), key=lambda row: (row[2], row[1], row[0]))
    finally:
        index.close()
    return [Chunk(url, number, text) for _doc, number, url, text in rows if text.strip()]


def _paraphraser(context: Context) -> Callable[[str], str]:
    llm = context.shared.get("llm")
    if llm is None:
        from ragtune.llm.factory import load_llm

        llm = context.shared["llm"] = load_llm(context.llm)
    return chat_generator(llm)


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
