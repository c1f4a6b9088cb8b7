"""One pretraining run, from text to a Llama model that every other route can use.

    corpus -> tokenizer (trained: bpe/char, or a directory) -> RUN/tokenizer
      -> token file (RUN/data, memory-mapped, reused while text and tokenizer are unchanged)
      -> memory check -> LlamaForCausalLM from a size -> Trainer.run (the fine-tuning loop:
         checkpoints, --resume, metrics.jsonl, loss.png) -> RUN/model (+ tokenizer)

Everything that can be wrong with the settings, the text or the size is found before the
run directory is touched: an error leaves nothing behind. Every process of a
data-parallel run executes this; only the main process writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.atomic import StagedDirectory, write_failure
from ragtune.errors import TrainingError, one_line
from ragtune.train.loop import checkpoints
from ragtune.train.outputs import check_parents, refuse_inputs_within, write_run_file
from ragtune.train.pretrain.config import TRAINED_TOKENIZERS, PretrainConfig
from ragtune.train.pretrain.corpus import Corpus
from ragtune.train.pretrain.sizes import ModelShape, human, parameters

TOKENIZER = "tokenizer"
DATA = "data"
MODEL = "model"
RUN_FILES = ("config.yaml", "summary.json", "metrics.jsonl", "loss.png")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass
class PretrainOutcome:
    saved: Path  # RUN/model
    result: Any  # loop.report.RunResult
    summary: dict[str, Any] = field(default_factory=dict)


def pretrain(
    config: PretrainConfig,
    resume: bool = False,
    overwrite: bool = False,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    on_sample: Callable[[int, str], None] | None = None,
) -> PretrainOutcome:
    config.validate()
    shape = config.shape()
    output = Path(config.output).expanduser()
    corpus = _corpus(config)
    checkpoint = _check_output(config, output, corpus, resume, overwrite)
    created = not output.exists()
    try:
        return _pretrain(config, shape, output, corpus, checkpoint, on_step, on_sample)
    except BaseException:
        if created:  # a run that failed before writing anything leaves no empty directory
            _remove_if_empty(output)
        raise


def _pretrain(
    config: PretrainConfig,
    shape: ModelShape,
    output: Path,
    corpus: Corpus,
    checkpoint: checkpoints.Checkpoint | None,
    on_step: Callable[[dict[str, Any]], None] | None,
    on_sample: Callable[[int, str], None] | None,
) -> PretrainOutcome:
    # In a data-parallel run the first process trains the tokenizer and writes the token
    # file; the others wait for it, then read both from the run directory.
    first = _first_process()
    if first:
        fast, report = _tokenizer(config, output, corpus, checkpoint)  # in memory: unsaved
        digest = hashlib.sha256(fast.to_str().encode()).hexdigest()
        config.tokenizer_digest = digest
        if checkpoint is not None:
            _check_resumable(config, checkpoint)
        vocab = fast.get_vocab_size(with_added_tokens=True)

    import tokenizers
    import torch
    from accelerate.utils import set_seed
    from transformers.utils import logging as transformers_logging

    from ragtune.train.loop.sharding import (
        DEEPSPEED,
        REPLICATED,
        configure_deepspeed,
        final_weights,
        gather_weights,
        strategy,
    )
    from ragtune.train.loop.trainer import Trainer, write_metrics
    from ragtune.train.models.trainable import pick_dtype
    from ragtune.train.pretrain.machine import available_memory_bytes, matmul_peak_flops
    from ragtune.train.pretrain.model import (
        make_optimizer,
        make_scheduler,
        new_model,
        use_compile,
    )
    from ragtune.train.pretrain.objective import (
        NextTokenLoss,
        PretrainObjective,
        RandomWindows,
        evaluation_windows,
    )
    from ragtune.train.pretrain.report import run_summary
    from ragtune.train.pretrain.tokens import eot_id, open_tokens
    from ragtune.train.run import make_accelerator

    transformers_logging.disable_progress_bar()  # ours is the one progress bar
    dtype = pick_dtype(config)  # type: ignore[arg-type]
    accelerator = make_accelerator(dtype)
    sharded = strategy(accelerator) != REPLICATED
    if strategy(accelerator) == DEEPSPEED and config.sample_every:
        raise TrainingError(
            "--sample-every needs the whole model in one process, which ragtune cannot "
            "gather under DeepSpeed; leave it out and sample RUN/model after the run"
        )
    tokenizer_dir = output / TOKENIZER
    if first:
        shards = accelerator.num_processes if sharded else 1
        _check_memory(
            shape, vocab, config.batch_size, accelerator.device, available_memory_bytes, shards
        )
        _token_data(config, output, corpus, fast, digest, shape.context)
        named = _named_tokenizer(config)
        _save_tokenizer(fast, tokenizer_dir, digest, named, report, shape.context)
    accelerator.wait_for_everyone()
    if not first:
        fast = tokenizers.Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        config.tokenizer_digest = hashlib.sha256(fast.to_str().encode()).hexdigest()
        vocab = fast.get_vocab_size(with_added_tokens=True)
    tokens = open_tokens(output / DATA)

    set_seed(config.seed)
    model = new_model(shape, vocab, eot_id(fast), config.dropout)
    network: Any = NextTokenLoss(model)
    if use_compile(config, accelerator.device, sharded):
        network = torch.compile(network)
    optimizer = make_optimizer(model, config)
    configure_deepspeed(accelerator, config.batch_size, config.max_grad_norm)
    network, optimizer = accelerator.prepare(network, optimizer)

    micro_per_step = config.grad_accum * accelerator.num_processes
    order = RandomWindows(
        tokens.meta.train_tokens, shape.context, config.batch_size, micro_per_step, config.seed
    )
    eval_items = evaluation_windows(
        tokens.meta.val_start,
        tokens.meta.val_tokens,
        shape.context,
        config.eval_batches * config.batch_size,
        config.seed,
    )
    objective = PretrainObjective(tokens.tokens, shape.context)
    hf_tokenizer = _hf_tokenizer(tokenizer_dir) if config.sample_every else None
    sampled: dict[str, str] = {}
    samples_taken = [0]  # counted on every process: a sharded sample is a collective

    def sample_now() -> str | None:
        """A sample, or None on the processes that only helped gather a sharded model."""
        if not sharded:
            return _sample(model, hf_tokenizer, config)
        whole = gather_weights(model, trainable_only=False)  # every process takes part
        if not accelerator.is_main_process:
            return None
        copy = new_model(shape, vocab, eot_id(fast), config.dropout)
        copy.load_state_dict(whole, strict=False)  # the tied head is the embeddings
        return _sample(copy, hf_tokenizer, config)

    def after_step(record: dict[str, Any]) -> None:
        if "eval_loss" in record:
            record["val_perplexity"] = round(math.exp(min(record["eval_loss"], 50.0)), 3)
        if config.sample_every and record["step"] % config.sample_every == 0:
            samples_taken[0] += 1
            text = sample_now()
            if text is not None:
                record["sample"] = sampled["last"] = text
                if on_sample is not None and accelerator.is_main_process:
                    on_sample(record["step"], text)
        if on_step is not None:
            on_step(record)

    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        _write_run_config(output, config, shape, vocab)
    trainer = Trainer(
        config,
        objective,
        model,
        network,
        range(tokens.meta.train_tokens),  # an item is a window's start: its own index
        eval_items,
        int(tokens.meta.eot_id),
        output,
        accelerator,
        after_step,
        order=order,
    )
    scheduler = make_scheduler(config, optimizer, trainer.total_steps)
    peak = matmul_peak_flops(accelerator.device, dtype) if accelerator.is_main_process else 0.0
    result = trainer.run(optimizer, scheduler, checkpoint)
    saved = output / MODEL
    summary: dict[str, Any] = {}
    # Every process: a sharded model's weights are gathered whole into the main process.
    whole = final_weights(accelerator, network, model, trainable_only=False)
    # No step was sampled: one sample of the end (all processes help when sharded).
    if config.sample_every and not samples_taken[0] and (sharded or accelerator.is_main_process):
        text = sample_now()
        if text is not None:
            sampled["last"] = text
    if accelerator.is_main_process:
        _save_model(model, tokenizer_dir, saved, whole)
        write_metrics(output, result.history)
        summary = run_summary(config, shape, vocab, tokens.meta, result, saved, peak, sampled)
        summary["threads"] = torch.get_num_threads()
        summary["device"] = str(accelerator.device)
        write_run_file(output / "summary.json", json.dumps(summary, indent=2))
    accelerator.wait_for_everyone()
    return PretrainOutcome(saved, result, summary)


# ----------------------------------------------------------------------------- inputs


def _first_process() -> bool:
    """Whether this is the main process, known before torch.distributed starts (launchers
    such as accelerate and torchrun set RANK)."""
    return os.environ.get("RANK", "0") == "0"


def _corpus(config: PretrainConfig) -> Corpus:
    data = Path(config.data).expanduser() if config.data else None
    index = Path(config.from_index).expanduser() if config.from_index else None
    return Corpus(data, index)


def _check_output(
    config: PretrainConfig, output: Path, corpus: Corpus, resume: bool, overwrite: bool
) -> checkpoints.Checkpoint | None:
    """Never start over a previous run by accident, nor write over an input."""
    if output.exists() and not output.is_dir():
        raise TrainingError(f"output {output} is a file, not a directory")
    check_parents(output)
    inputs = [(label, path) for label, path in _inputs(config, corpus) if path is not None]
    for written in [output / DATA, output / TOKENIZER, output / MODEL, output / "checkpoints"]:
        refuse_inputs_within(written, inputs, output=output)
    for name in RUN_FILES:
        refuse_inputs_within(output / name, inputs, output=output)
    latest = checkpoints.load_latest(output)
    if resume:
        if latest is None:
            raise TrainingError(f"nothing to resume: {output} has no checkpoint")
        return latest
    if (latest is not None or (output / MODEL).exists()) and not overwrite:
        raise TrainingError(
            f"{output} already holds a training run; use --resume to continue it, "
            "--overwrite to start over, or another --output"
        )
    return None


def _named_tokenizer(config: PretrainConfig) -> Path | None:
    """The tokenizer directory the settings name; None for one trained on the corpus."""
    trained = config.tokenizer in TRAINED_TOKENIZERS
    return None if trained else Path(config.tokenizer).expanduser()


def _inputs(config: PretrainConfig, corpus: Corpus) -> list[tuple[str, Path | None]]:
    return [
        ("training data", corpus.data),
        ("index", corpus.from_index),
        ("tokenizer", _named_tokenizer(config)),
    ]


def _tokenizer(
    config: PretrainConfig, output: Path, corpus: Corpus, checkpoint: Any
) -> tuple[Any, Any]:
    """The run's tokenizer (a ``tokenizers.Tokenizer``) and, when trained now, its report:
    the directory named, the one this run trained before (on --resume), or one trained
    now on the corpus, in memory."""
    import tokenizers

    named = _named_tokenizer(config)
    if named is not None:
        path = named / "tokenizer.json"
    elif checkpoint is not None:
        path = output / TOKENIZER / "tokenizer.json"
    else:
        from ragtune.train.pretrain.tokenizer import build_tokenizer

        trained = build_tokenizer(corpus, config.vocab_size, char=config.tokenizer == "char")
        return trained.tokenizer, trained.report
    if not path.is_file():
        raise TrainingError(
            f"tokenizer {path.parent}: not a tokenizer directory (no tokenizer.json); "
            "give bpe, char, or a directory saved by ragtune tokenizer train"
        )
    try:
        return tokenizers.Tokenizer.from_file(str(path)), None
    except Exception as error:  # tokenizers raises a bare Exception for a damaged file
        raise TrainingError(f"cannot load the tokenizer {path}: {one_line(error)}") from None


def _save_tokenizer(
    fast: Any, target: Path, digest: str, source: Path | None, report: Any, context: int
) -> Path:
    """RUN/tokenizer in the Hugging Face layout, unless it already holds this tokenizer:
    the named directory's files copied, or the tokenizer trained for this run saved."""
    import tokenizers

    try:
        existing = tokenizers.Tokenizer.from_file(str(target / "tokenizer.json")).to_str()
        if hashlib.sha256(existing.encode()).hexdigest() == digest:
            return target
    except Exception:  # absent or damaged: written anew
        pass
    try:
        with StagedDirectory(target) as staging:
            if source is None:
                from ragtune.train.pretrain.tokenizer import save_tokenizer

                save_tokenizer(fast, staging, model_max_length=context, report=report)
                return target
            for name in TOKENIZER_FILES:
                if (source / name).is_file():
                    shutil.copyfile(source / name, staging / name)
    except OSError as error:
        reason = write_failure(error, target.parent)
        raise TrainingError(f"cannot write the tokenizer to {target}: {reason}") from None
    return target


def _hf_tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
    except Exception as error:  # damaged files, an unknown tokenizer class, ...
        raise TrainingError(f"cannot load the tokenizer {directory}: {one_line(error)}") from None


def _check_resumable(config: PretrainConfig, checkpoint: Any) -> None:
    saved = checkpoint.state.get("config", {})
    # A trained tokenizer is reloaded from RUN/tokenizer, so its settings are compared too.
    same_settings = (saved.get("tokenizer"), saved.get("vocab_size")) == (
        config.tokenizer,
        config.vocab_size,
    )
    if saved.get("tokenizer_digest") != config.tokenizer_digest or not same_settings:
        was = saved.get("tokenizer")
        raise TrainingError(
            f"cannot resume {checkpoint.path}: it was trained with another tokenizer "
            f"({was} -> {config.tokenizer})"
        )
    known = {f.name for f in dataclasses.fields(PretrainConfig)}
    try:
        before = _resume_settings(PretrainConfig(**{k: v for k, v in saved.items() if k in known}))
    except (TypeError, TrainingError):
        before = {}
    current = _resume_settings(config)
    differ = [key for key in current if before.get(key) != current[key]]
    if differ:
        changes = ", ".join(f"{key} {before.get(key)!r} -> {current[key]!r}" for key in differ)
        raise TrainingError(f"cannot resume {checkpoint.path}: settings changed ({changes})")


def _resume_settings(config: PretrainConfig) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one, or its batches differ."""
    shape = config.shape()
    return {
        "batch_size": config.batch_size,
        "grad_accum": config.grad_accum,
        "seed": config.seed,
        "val_fraction": config.val_fraction,
        "model": [shape.layers, shape.heads, shape.kv, shape.dim, shape.ffn_dim, shape.context],
    }


# ----------------------------------------------------------------------------- data


def _token_data(
    config: PretrainConfig, output: Path, corpus: Corpus, fast: Any, digest: str, context: int
) -> None:
    from ragtune.train.pretrain.tokens import reusable, tokenize_corpus

    directory = output / DATA
    fingerprint = corpus.fingerprint()
    if not reusable(directory, fingerprint, digest):
        tokenize_corpus(
            corpus, fast, digest, directory, config.val_fraction, context + 1, fingerprint
        )


def _check_memory(
    shape: ModelShape,
    vocab: int,
    batch_size: int,
    device: Any,
    available: Callable[[Any], int],
    shards: int = 1,
) -> None:
    """``shards``: processes the weights, gradients and optimizer state are split over."""
    from ragtune.train.pretrain.sizes import training_bytes

    needed = training_bytes(shape, vocab, batch_size, shards=shards)
    free = available(device)
    if needed > free:
        raise TrainingError(
            f"this model ({human(parameters(shape, vocab))} parameters, batch {batch_size} x "
            f"{shape.context}) needs about {needed / 2**30:.1f} GiB to train and "
            f"{device} has {free / 2**30:.1f} GiB free; choose a smaller --size, "
            "--batch-size or --context"
        )


def _sample(model: Any, tokenizer: Any, config: PretrainConfig) -> str:
    from ragtune.train.pretrain.sample import sample_text

    return sample_text(
        model,
        tokenizer,
        config.sample_prompt,
        config.sample_tokens,
        config.temperature,
        config.top_k,
        config.seed,
    )


# ----------------------------------------------------------------------------- outputs


def _save_model(
    model: Any, tokenizer_dir: Path, target: Path, weights: dict[str, Any] | None = None
) -> None:
    """The model with its tokenizer, a Hugging Face directory: written aside, put in place.
    ``weights`` are the model's, gathered whole, where the model itself holds a shard."""
    try:
        with StagedDirectory(target) as staging:
            model.save_pretrained(staging, safe_serialization=True, state_dict=weights)
            # The tokenizer's own files, as trained or given: re-saving through transformers
            # 5 would name a tokenizer class that transformers 4 cannot load.
            for name in (*TOKENIZER_FILES, "ragtune_tokenizer.json"):
                if (tokenizer_dir / name).is_file():
                    shutil.copyfile(tokenizer_dir / name, staging / name)
    except Exception as error:  # tokenizers reports a full disk as a bare Exception
        reason = write_failure(error, target.parent)
        raise TrainingError(
            f"cannot save the model to {target}: {reason}; "
            "the checkpoints are kept, free space and run again with --resume"
        ) from None


def _write_run_config(output: Path, config: PretrainConfig, shape: ModelShape, vocab: int) -> None:
    import yaml

    from ragtune.train.config import config_as_dict

    settings = config_as_dict(config)
    settings["resolved_shape"] = shape.as_dict(vocab)
    write_run_file(output / "config.yaml", yaml.safe_dump(settings, sort_keys=False))


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()
