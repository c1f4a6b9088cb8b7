"""What a training run will do, read from the same settings and data the run reads.

``pretrain_plan`` and ``finetune_plan`` build a ``Plan``: the model, how it is trained,
every micro-batch (fine-tuning's exactly as the loop will batch them: the same encoding,
split and length-grouped order), the evaluation passes and checkpoints, and the fixed
work around the loop. ``price`` turns a plan into time, memory, FLOPs and money.

Wall time here is the whole command as a user runs it (``python -m ragtune pretrain ...``):
start-up (imports), reading and tokenizing the data, building or loading the model, the
training loop with its evaluations and checkpoints (summary.json's ``seconds``, plus the
evaluation before the first step), and saving. Each phase is reported apart.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.errors import EstimateError
from ragtune.train.estimate import compute
from ragtune.train.estimate.compute import Batch, Method
from ragtune.train.estimate.hardware import Hardware
from ragtune.train.estimate.memory import MemoryEstimate, training_memory
from ragtune.train.estimate.shapes import ModelSpec

CHINCHILLA_TOKENS_PER_PARAMETER = 20  # Hoffmann et al. 2022
# Characters a byte-level BPE token covers on English prose, by vocabulary size, measured on
# tiny Shakespeare (ragtune tokenizer train: 2.87 at 2,048, 3.3 at 8,192; 256 is the bare
# byte alphabet, one byte a token), log-linear between; only used before the tokenizer
# exists. Past 8k the gain flattens: kept at 3.3 (an upper bound on the token count).
CHARS_PER_BPE_TOKEN = ((256, 1.0), (2048, 2.87), (8192, 3.3))
# Host memory that tokenizing a corpus leaves allocated for the rest of the run (RSS,
# measured with tokenizers 0.23 on tiny Shakespeare at 0.3M, 1.1M and 3M characters, a
# fresh interpreter each): training a byte-level BPE keeps about 70 bytes a character of
# the corpus (its word counts and pair tables, freed but not handed back to the OS);
# encoding it into the token file keeps about 98 bytes a character plus 42 a token
# (tokenizers' Encoding per piece: offsets and alignments a character, the token's string,
# id, offsets and masks a token; char tokenizer: 140 a character, BPE at 2k: 323 a token).
# Encoding goes one batch of BATCH_CHARS characters at a time, so the heap it grows is one
# batch's. Later allocations reuse part of it, so the total is an upper bound (by ~50 MB
# on tiny Shakespeare).
BPE_TRAINING_BYTES_PER_CHAR = 70
ENCODING_BYTES_PER_CHAR = 98
ENCODING_BYTES_PER_TOKEN = 42
# Fixed work around the loop on this machine, in multiples measured once (a run's log):
BPE_SECONDS_PER_CHAR = 1.0e-6  # training a BPE tokenizer (tokenizers, every core)
TOKENIZE_SECONDS_PER_CHAR = 2.5e-7  # encoding the corpus into the token file
ENCODE_SECONDS_PER_TOKEN = 2.0e-5  # fine-tuning: chat template + tokenizer per record
WRITE_BYTES_PER_SECOND = 300e6  # safetensors and checkpoints to a local disk
READ_BYTES_PER_SECOND = 1.0e9  # safetensors read back (page cache warm after the first)
SAVE_SECONDS = 0.8  # writing a run's files: tokenizer, config, metrics, loss plot
PEAK_PROBE_SECONDS = 0.6  # pretraining times a matmul peak for its MFU figure


@dataclass
class Plan:
    route: str  # "pretrain", "full" or "lora"
    model: ModelSpec
    method: Method
    steps: int
    batches: Counter[Batch]  # every micro-batch of the run, counted
    eval_batches: list[Batch]  # one evaluation pass
    evaluations: int  # passes, the one before the first step included
    checkpoints: int
    data_tokens: int  # the dataset's tokens (for Chinchilla)
    value_bytes: int = 4
    host_bytes: float = 0.0  # on this machine: memory left allocated by the data's preparation
    setup: dict[str, float] = field(default_factory=dict)  # seconds of work around the loop
    data: dict[str, Any] = field(default_factory=dict)  # what was counted, for the report
    notes: list[str] = field(default_factory=list)

    @property
    def trained_tokens(self) -> int:
        return sum(batch.trained_tokens * count for batch, count in self.batches.items())

    @property
    def largest(self) -> Batch:
        return max(self.batches, key=lambda batch: (batch.tokens, batch.head_rows))


@dataclass
class Priced:
    plan: Plan
    flops: float
    seconds: dict[str, float]
    memory: MemoryEstimate
    memory_available: float
    fits: bool
    money: float | None
    chinchilla_tokens: float

    @property
    def wall_seconds(self) -> float:
        return sum(self.seconds.values())


def price(plan: Plan, hardware: Hardware) -> Priced:
    model, method = plan.model, plan.method
    flops = sum(compute.batch_flops(model, method, b) * n for b, n in plan.batches.items())
    flops += plan.evaluations * sum(compute.eval_flops(model, b) for b in plan.eval_batches)
    training = sum(
        compute.batch_seconds(hardware, model, method, b) * n for b, n in plan.batches.items()
    )
    training += plan.steps * compute.optimizer_seconds(hardware, model, method)
    training += compute.first_touch_seconds(hardware, model, method)
    evaluation = plan.evaluations * sum(
        compute.eval_seconds(hardware, model, b) for b in plan.eval_batches
    )
    # a checkpoint (train/loop/checkpoints.py) holds the trained parameters and AdamW's two
    # moments, fp32: LoRA's adapters only, never the frozen base
    state_bytes = 3 * compute.trainable_parameters(model, method) * 4
    seconds = dict(plan.setup)
    if hardware.machine is not None:
        seconds = {"startup": hardware.machine.startup_seconds, **seconds}
    seconds["training"] = training
    seconds["evaluation"] = evaluation
    seconds["checkpoints"] = plan.checkpoints * state_bytes / WRITE_BYTES_PER_SECOND
    on_cpu = hardware.machine is not None
    value_bytes = 4 if on_cpu else 2
    process = 0.0  # a GPU's memory holds no interpreter
    if hardware.machine is not None:
        # pretraining imports less than fine-tuning (no PEFT, no datasets) but keeps what
        # tokenizing the corpus left allocated (plan.host_bytes); both measured
        machine = hardware.machine
        pretraining = plan.route == "pretrain" and machine.pretrain_rss > 0
        process = (machine.pretrain_rss if pretraining else machine.baseline_rss) + plan.host_bytes
    memory = training_memory(model, method, plan.largest, value_bytes, process)
    available = float(hardware.memory_bytes)
    hours = sum(seconds.values()) / 3600
    money = hardware.price_per_hour * hours if hardware.price_per_hour is not None else None
    return Priced(
        plan,
        flops,
        seconds,
        memory,
        available,
        memory.total <= available,
        money,
        CHINCHILLA_TOKENS_PER_PARAMETER * model.parameters,
    )


# ----------------------------------------------------------------------------- pretraining


def pretrain_plan(config: Any, model: ModelSpec | None, tokens: int | None) -> Plan:
    """The plan of ``ragtune pretrain`` with these settings (a PretrainConfig)."""
    chars, documents = 0, 0
    setup: dict[str, float] = {}
    data: dict[str, Any] = {}
    host_bytes = 0.0
    if tokens is None:
        chars, documents = _corpus_size(config)
        tokens = _pretrain_tokens(config, chars)
        data |= {"characters": chars, "documents": documents}
        if config.tokenizer == "bpe":
            setup["tokenizer"] = chars * BPE_SECONDS_PER_CHAR
        setup["tokenize"] = chars * TOKENIZE_SECONDS_PER_CHAR
        host_bytes = tokenizing_bytes(config.tokenizer == "bpe", chars, tokens)
    data["tokens"] = tokens
    if model is None:
        from ragtune.train.estimate.shapes import ModelSpec as Spec

        model = Spec(config.size or "custom", config.shape(), _pretrain_vocab(config))
    shape = model.shape
    per_micro = config.batch_size * shape.context
    train_tokens = int(tokens * (1 - config.val_fraction))
    steps = config.max_steps or max(
        1, math.ceil(config.epochs * train_tokens / (per_micro * config.grad_accum))
    )
    batch = Batch(config.batch_size, shape.context, per_micro, per_micro)
    evaluations = 1 + _evaluations(steps, config.eval_every or config.save_every)
    checkpoints = len([s for s in range(config.save_every, steps, config.save_every)])
    setup["model"] = PEAK_PROBE_SECONDS
    setup["save"] = SAVE_SECONDS + model.parameters * 4 / WRITE_BYTES_PER_SECOND
    return Plan(
        "pretrain",
        model,
        Method("pretrain"),
        steps,
        Counter({batch: steps * config.grad_accum}),
        [batch] * config.eval_batches,
        evaluations,
        checkpoints,
        tokens,
        host_bytes=host_bytes,
        setup=setup,
        data=data,
    )


def tokenizing_bytes(trains_bpe: bool, chars: int, tokens: int) -> float:
    """What preparing the corpus leaves allocated (see ``ENCODING_BYTES_PER_CHAR``)."""
    from ragtune.train.pretrain.tokens import BATCH_CHARS

    batch = min(1.0, BATCH_CHARS / chars) if chars else 1.0  # the share one batch holds
    held = batch * (ENCODING_BYTES_PER_CHAR * chars + ENCODING_BYTES_PER_TOKEN * tokens)
    return held + (BPE_TRAINING_BYTES_PER_CHAR * chars if trains_bpe else 0.0)


def chars_per_bpe_token(vocab: int) -> float:
    points = CHARS_PER_BPE_TOKEN
    if vocab <= points[0][0]:
        return points[0][1]
    for (v0, c0), (v1, c1) in zip(points, points[1:], strict=False):
        if vocab <= v1:
            return c0 + (c1 - c0) * math.log(vocab / v0) / math.log(v1 / v0)
    return points[-1][1]


def _pretrain_vocab(config: Any) -> int:
    from ragtune.train.pretrain.config import DEFAULT_BPE_VOCAB

    if config.tokenizer not in ("bpe", "char"):
        return _tokenizer_vocab(Path(config.tokenizer).expanduser())
    return int(config.vocab_size or (260 if config.tokenizer == "char" else DEFAULT_BPE_VOCAB))


def _evaluations(steps: int, every: int) -> int:
    """Evaluations inside the loop: every ``every`` steps and after the last."""
    return steps // every + (0 if steps % every == 0 else 1)


def _corpus_size(config: Any) -> tuple[int, int]:
    from ragtune.train.pretrain.corpus import Corpus

    data = Path(config.data).expanduser() if config.data else None
    index = Path(config.from_index).expanduser() if config.from_index else None
    if data is not None and not data.exists():
        raise EstimateError(f"data {data} does not exist")
    chars = documents = 0
    for text in Corpus(data, index).texts():
        chars += len(text)
        documents += 1
    if chars == 0:
        raise EstimateError(f"{data or index}: no text to train on")
    return chars, documents


def _pretrain_tokens(config: Any, chars: int) -> int:
    if config.tokenizer == "char":
        return chars
    if config.tokenizer == "bpe":
        return round(chars / chars_per_bpe_token(_pretrain_vocab(config)))
    from ragtune.train.pretrain.corpus import Corpus

    tokenizer = _load_tokenizer(Path(config.tokenizer).expanduser())
    data = Path(config.data).expanduser() if config.data else None
    index = Path(config.from_index).expanduser() if config.from_index else None
    return sum(len(tokenizer.encode(text).ids) for text in Corpus(data, index).texts())


def _load_tokenizer(directory: Path) -> Any:
    import tokenizers

    path = directory / "tokenizer.json"
    if not path.is_file():
        raise EstimateError(f"tokenizer {directory}: no tokenizer.json")
    try:
        return tokenizers.Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception for a damaged file
        raise EstimateError(f"cannot load the tokenizer {path}: {error}") from None


def _tokenizer_vocab(directory: Path) -> int:
    return int(_load_tokenizer(directory).get_vocab_size(with_added_tokens=True))


# ----------------------------------------------------------------------------- fine-tuning


def finetune_plan(config: Any, model: ModelSpec) -> Plan:
    """The plan of ``ragtune finetune`` with these settings (a TrainConfig): the data
    encoded with the base model's own tokenizer and chat template, split and batched
    exactly as the run will."""
    from ragtune.train.data.encode import prepare_tokenizer
    from ragtune.train.loop.trainer import LengthGroupedEpochs
    from ragtune.train.run import encode, load_records, load_tokenizer, split_eval

    if model.directory is None:
        raise EstimateError("fine-tuning needs a model directory or GGUF file (--model)")
    records = load_records(config, "sft")
    tokenizer = prepare_tokenizer(load_tokenizer(model.directory))
    examples, report = encode(config, "sft", tokenizer, records)
    train_items, eval_items = split_eval(examples, config.eval_fraction, config.seed)
    lengths = [len(item.input_ids) for item in train_items]
    order = LengthGroupedEpochs(lengths, config.batch_size, config.seed, config.grad_accum)
    steps = config.max_steps or max(1, math.ceil(config.epochs * order.steps_per_epoch))
    batches: Counter[Batch] = Counter()
    for step in range(1, steps + 1):
        for micro in order.micro_batches(step, 0, 1):
            batches[_batch([train_items[i] for i in micro])] += 1
    size = config.batch_size
    eval_batches = [_batch(eval_items[i : i + size]) for i in range(0, len(eval_items), size)]
    every = config.eval_every or config.save_every
    evaluations = (1 + _evaluations(steps, every)) if eval_items else 0
    checkpoints = len([s for s in range(config.save_every, steps, config.save_every)])
    method = Method(
        config.method,
        lora_r=config.lora_r,
        lora_dropout=config.lora_dropout,
        checkpointing=config.gradient_checkpointing,
        qlora=config.qlora,
    )
    weights = model.parameters * 4
    saved = compute.lora_parameters(model, config.lora_r) * 4 if method.lora else weights
    tokens = report.tokens or sum(len(e.input_ids) for e in examples)
    setup = {
        "data": tokens * ENCODE_SECONDS_PER_TOKEN,
        "model": weights / READ_BYTES_PER_SECOND,
        "save": SAVE_SECONDS + saved / WRITE_BYTES_PER_SECOND,
    }
    data = {
        "records": report.records,
        "examples": len(examples),
        "train_examples": len(train_items),
        "eval_examples": len(eval_items),
        "tokens": tokens,
        "truncated": report.truncated,
    }
    notes = []
    if config.lora_targets not in ("all-linear", ["all-linear"]) and method.lora:
        notes.append("LoRA priced on every linear layer (all-linear); fewer targets cost less")
    return Plan(
        config.method,
        model,
        method,
        steps,
        batches,
        eval_batches,
        evaluations,
        checkpoints,
        tokens,
        setup=setup,
        data=data,
        notes=notes,
    )


def finetune_token_plan(config: Any, model: ModelSpec, tokens: int) -> Plan:
    """The plan of ``ragtune finetune`` on ``tokens`` tokens of data not at hand (a model
    known by its shape only has no tokenizer to count real data with): the data taken as
    examples of ``max_length`` tokens (packed, as ``packing: true`` batches them; unpacked
    examples are shorter, so this is the upper bound), every token labelled (the output
    head's rows; masking the prompts makes it cheaper), split by ``eval_fraction``."""
    length = config.max_length
    examples = max(1, math.ceil(tokens / length))
    evaluated = math.floor(examples * config.eval_fraction)
    trained = examples - evaluated
    micro = math.ceil(trained / config.batch_size)
    per_epoch = max(1, math.ceil(micro / config.grad_accum))
    steps = config.max_steps or max(1, math.ceil(config.epochs * per_epoch))
    size = config.batch_size
    full = Batch(size, length, size * length, size * length)
    # the last micro-batch of an epoch holds what is left of it
    left = trained - (micro - 1) * size
    last = Batch(left, length, left * length, left * length)
    # as the loop orders them: ``grad_accum`` micro-batches a step, the epoch's short last
    # one in its last step, which wraps round to the epoch's first batches to fill up
    accum = config.grad_accum
    start = (per_epoch - 1) * accum
    short = sum(1 for i in range(start, start + accum) if i % micro == micro - 1)
    epochs = steps // per_epoch
    batches: Counter[Batch] = Counter()
    batches[full] += steps * accum - epochs * short
    batches[last] += epochs * short
    batches = +batches  # drop zero counts
    eval_batches = [
        Batch(n, length, n * length, n * length)
        for n in (min(size, evaluated - i) for i in range(0, evaluated, size))
    ]
    every = config.eval_every or config.save_every
    evaluations = (1 + _evaluations(steps, every)) if evaluated else 0
    checkpoints = len([s for s in range(config.save_every, steps, config.save_every)])
    method = Method(
        config.method,
        lora_r=config.lora_r,
        lora_dropout=config.lora_dropout,
        checkpointing=config.gradient_checkpointing,
        qlora=config.qlora,
    )
    weights = model.parameters * 4
    saved = compute.lora_parameters(model, config.lora_r) * 4 if method.lora else weights
    setup = {
        "data": tokens * ENCODE_SECONDS_PER_TOKEN,
        "model": weights / READ_BYTES_PER_SECOND,
        "save": SAVE_SECONDS + saved / WRITE_BYTES_PER_SECOND,
    }
    data = {
        "tokens": tokens,
        "examples": examples,
        "train_examples": trained,
        "eval_examples": evaluated,
    }
    notes = [
        f"data taken as {examples:,} examples of {length:,} tokens (max_length), "
        "every token trained: an upper bound"
    ]
    if model.directory is None:
        shape = model.shape
        notes.append(
            f"shape {shape.layers} layers x {shape.dim} wide, {shape.heads} heads "
            f"({shape.kv} KV), feed-forward {shape.ffn_dim}, vocabulary {model.vocab:,}"
        )
    return Plan(
        config.method,
        model,
        method,
        steps,
        batches,
        eval_batches,
        evaluations,
        checkpoints,
        tokens,
        setup=setup,
        data=data,
        notes=notes,
    )


def _batch(items: list[Any]) -> Batch:
    width = max(len(item.input_ids) for item in items)
    labelled = sum(sum(1 for label in item.labels[1:] if label != -100) for item in items)
    trained = sum(len(item.input_ids) for item in items)
    return Batch(len(items), width, labelled, trained)
