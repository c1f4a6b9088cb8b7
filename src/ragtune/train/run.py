"""One fine-tuning or alignment run, from settings to a saved adapter or model.

    base model -> tokenizer -> records -> examples -> train/eval split
      -> model (+ LoRA) -> Trainer.run (checkpoints, metrics) -> OUTPUT/adapter or OUTPUT/model

Every process of a data-parallel run executes this; only the main process writes.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.atomic import StagedDirectory, write_failure
from ragtune.errors import DatasetError, TrainingError, one_line
from ragtune.train.config import TrainConfig, config_as_dict
from ragtune.train.data.encode import EncodeReport
from ragtune.train.loop import checkpoints
from ragtune.train.outputs import check_parents, refuse_inputs_within, write_run_file

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    saved: Path  # OUTPUT/adapter (LoRA) or OUTPUT/model (full)
    base: Path
    result: Any  # loop.report.RunResult
    encoding: EncodeReport
    train_examples: int
    eval_examples: int


def final_dir(config: TrainConfig) -> Path:
    return Path(config.output) / ("adapter" if config.method == "lora" else "model")


# What a run writes in its output directory besides checkpoints/ and adapter/ or model/.
RUN_FILES = ("config.yaml", "summary.json", "metrics.jsonl", "loss.png")


def check_output(
    config: TrainConfig, resume: bool, overwrite: bool
) -> checkpoints.Checkpoint | None:
    """Never start over a previous run's work by accident, nor write over an input; find
    what to resume. Nothing is removed here: see ``clear_previous_run``."""
    output = Path(config.output)
    if output.exists() and not output.is_dir():
        raise TrainingError(f"output {output} is a file, not a directory")
    check_parents(output)
    inputs = run_inputs(config)
    for written in written_paths(config):
        refuse_inputs_within(written, inputs, output=output)
    latest = checkpoints.load_latest(output)
    if resume:
        if latest is None:
            raise TrainingError(f"nothing to resume: {output} has no checkpoint")
        return latest
    previous = latest is not None or final_dir(config).exists()
    if previous and not overwrite:
        raise TrainingError(
            f"{output} already holds a training run; use --resume to continue it, "
            "--overwrite to start over, or another --output"
        )
    return None


def written_paths(config: TrainConfig) -> list[Path]:
    """What a run writes, or removes to start over (--overwrite)."""
    output = Path(config.output)
    return [checkpoints.checkpoint_dir(output), final_dir(config)] + [
        output / name for name in RUN_FILES
    ]


def run_inputs(config: TrainConfig) -> list[tuple[str, Path]]:
    from ragtune.train.models.base_model import spec_path

    named = [
        ("training data", config.data),
        ("index", config.from_index),
        ("base model", spec_path(config.base)),
    ]
    return [(label, Path(path).expanduser()) for label, path in named if path is not None]


def clear_previous_run(config: TrainConfig) -> None:
    """Remove an earlier run's checkpoints and model (--overwrite): only once the new run
    has its data, its model and its settings, so a typo in them loses nothing."""
    shutil.rmtree(checkpoints.checkpoint_dir(Path(config.output)), ignore_errors=True)
    shutil.rmtree(final_dir(config), ignore_errors=True)


def split_eval(items: Sequence[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """A seeded held-out share; none for datasets too small to spare it."""
    count = int(len(items) * fraction)
    if fraction > 0 and len(items) >= 20:
        count = max(1, count)
    if count == 0:
        return list(items), []
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    train = [item for i, item in enumerate(items) if i not in held]
    return train, [items[i] for i in sorted(held)]


def index_records(index_dir: Path) -> list[Any]:
    """The chunks of a ragtune index, in document order, as plain-text records."""
    from ragtune.index.vector_index import VectorStoreIndex
    from ragtune.train.data.records import TextRecord

    index = VectorStoreIndex.load(index_dir)
    try:
        # By URL, not document id (a hash of the URL): the same documents served from
        # another host or port then train in the same order.
        rows = sorted(index.store.chunk_texts(), key=lambda row: (row[2], row[1], row[0]))
    finally:
        index.close()
    records = [
        TextRecord(text, f"{url}#chunk{number}") for _doc, number, url, text in rows if text.strip()
    ]
    if not records:
        raise DatasetError(f"{index_dir}: the index holds no documents to train on")
    return records


def load_records(config: TrainConfig, objective_name: str) -> list[Any]:
    """Parse the data first: a bad line fails in a second, before any model loads."""
    from ragtune.train.data.records import load_preference_pairs, load_sft_records

    if objective_name == "dpo":
        if config.data is None:
            raise DatasetError("no preference data: give --data FILE")
        return list(load_preference_pairs(Path(config.data)))
    if config.data is None and config.from_index is None:
        raise DatasetError("no training data: give --data FILE or --from-index DIR")
    records: list[Any] = []
    if config.data is not None:
        records += load_sft_records(Path(config.data), config.format)[1]
    if config.from_index is not None:
        records += index_records(Path(config.from_index))
    return records


def encode(
    config: TrainConfig, objective_name: str, tokenizer: Any, records: list[Any]
) -> tuple[list[Any], EncodeReport]:
    from ragtune.train.data.encode import encode_pairs, encode_records, pack

    source = config.data or config.from_index
    if objective_name == "dpo":
        pairs, report = encode_pairs(tokenizer, records, config.max_length, config.overlong)
        if not pairs:
            raise DatasetError(f"{source}: no pair left to train on (all longer than max_length?)")
        return pairs, report
    examples, report = encode_records(
        tokenizer, records, config.max_length, config.mask_prompt, config.overlong
    )
    examples = [example for example in examples if example.trained_tokens > 1]
    if not examples:
        raise DatasetError(f"{source}: no record left to train on (all longer than max_length?)")
    if config.packing:
        examples = pack(examples, config.max_length)
    return examples, report


def make_accelerator(dtype: Any) -> Any:
    import torch
    from accelerate import Accelerator

    from ragtune.runtime import training_threads
    from ragtune.train.loop.sharding import check_accelerator

    on_gpu = torch.cuda.is_available()
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "no")
    accelerator = Accelerator(cpu=not on_gpu, mixed_precision=precision if on_gpu else "no")
    check_accelerator(accelerator)
    if not on_gpu:
        torch.set_num_threads(training_threads(accelerator.num_processes))
    return accelerator


def make_scheduler(config: TrainConfig, optimizer: Any, total_steps: int) -> Any:
    from transformers import get_scheduler

    name = "constant_with_warmup" if config.schedule == "constant" else config.schedule
    warmup = math.ceil(config.warmup_ratio * total_steps)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


def train(
    config: TrainConfig,
    objective_name: str,
    resume: bool = False,
    overwrite: bool = False,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> RunOutcome:
    """Run SFT (``objective_name="sft"``) or DPO (``"dpo"``) as configured."""
    config.validate()
    checkpoint = check_output(config, resume, overwrite)
    records = load_records(config, objective_name)  # before the heavy imports: fails fast

    import torch
    from accelerate.utils import set_seed
    from transformers.utils import logging as transformers_logging

    from ragtune.train.data.encode import prepare_tokenizer
    from ragtune.train.loop.sharding import REPLICATED, configure_deepspeed, final_weights
    from ragtune.train.loop.sharding import strategy as sharding_strategy
    from ragtune.train.loop.trainer import Trainer, check_resumable, write_metrics
    from ragtune.train.models.base_model import resolve_base_model
    from ragtune.train.models.trainable import SelectiveLoss, load_model, pick_dtype

    if checkpoint is not None:
        check_resumable(config, checkpoint)
    base = resolve_base_model(config.base)
    transformers_logging.disable_progress_bar()  # ours is the one progress bar
    tokenizer = prepare_tokenizer(load_tokenizer(base))
    examples, report = encode(config, objective_name, tokenizer, records)
    train_items, eval_items = split_eval(examples, config.eval_fraction, config.seed)

    dtype = pick_dtype(config)
    accelerator = make_accelerator(dtype)
    if config.qlora and sharding_strategy(accelerator) != REPLICATED:
        # bitsandbytes' packed 4-bit weights are not shards FSDP or ZeRO-3 can split as set
        # up here (it needs a quant storage dtype ragtune does not choose): one base a GPU.
        raise TrainingError(
            "--qlora runs data parallel only (examples/accelerate/ddp-1node-Ngpu.yaml): "
            "a 4-bit base fits one GPU; shard with --method lora or full instead"
        )
    set_seed(config.seed)
    model = load_model(base, config, dtype)
    network = SelectiveLoss(model)
    objective = _objective(objective_name, config, model, network, base, dtype)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    configure_deepspeed(accelerator, config.batch_size, config.max_grad_norm)
    network, optimizer = accelerator.prepare(network, optimizer)

    output = Path(config.output)
    if accelerator.is_main_process:
        if checkpoint is None:
            clear_previous_run(config)
        output.mkdir(parents=True, exist_ok=True)
        _write_run_config(output, config, base)
    trainer = Trainer(
        config,
        objective,
        model,
        network,
        train_items,
        eval_items,
        tokenizer.pad_token_id,
        output,
        accelerator,
        on_step,
    )
    scheduler = make_scheduler(config, optimizer, trainer.total_steps)
    # No barrier on failure: a process waiting for a dead peer would hang the launcher.
    result = trainer.run(optimizer, scheduler, checkpoint)
    if objective_name == "dpo" and result.history:
        last = result.history[-1]
        result.extra = {key: last[key] for key in ("margin", "accuracy") if key in last}
    saved = final_dir(config)
    # Every process: a sharded model's weights are gathered whole into the main process.
    whole = final_weights(accelerator, network, model, trainable_only=config.method == "lora")
    if accelerator.is_main_process:
        save_final(model, tokenizer, base, saved, whole)
        write_metrics(output, result.history)
        _write_summary(output, result, saved, report, len(train_items), len(eval_items))
    accelerator.wait_for_everyone()
    return RunOutcome(saved, base, result, report, len(train_items), len(eval_items))


def load_tokenizer(base: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(base, trust_remote_code=False)
    except Exception as error:  # asks for its own code, damaged files, ...
        raise TrainingError(f"cannot load the tokenizer of {base}: {one_line(error)}") from None


def _objective(
    name: str, config: TrainConfig, model: Any, network: Any, base: Path, dtype: Any
) -> Any:
    from ragtune.train.objectives.sft import SupervisedObjective

    if name == "sft":
        return SupervisedObjective()
    from ragtune.train.models.trainable import SelectiveLoss
    from ragtune.train.objectives.dpo import PreferenceObjective

    if config.method == "lora":
        # the frozen base is the reference: the same network with the adapter off
        return PreferenceObjective(network, config.dpo_beta, adapter_model=model)
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(
        base, dtype=dtype, use_safetensors=True, trust_remote_code=False
    ).eval()
    reference.requires_grad_(False)
    return PreferenceObjective(SelectiveLoss(reference), config.dpo_beta)


def save_final(
    model: Any, tokenizer: Any, base: Path, target: Path, weights: dict[str, Any] | None = None
) -> None:
    """The adapter (LoRA) or whole model (full), written aside and put in place whole.
    ``weights`` are the model's, gathered whole, where the model itself holds a shard."""
    try:
        with StagedDirectory(target) as staging:
            model.save_pretrained(staging, safe_serialization=True, state_dict=weights)
            tokenizer.save_pretrained(staging)
            source = base / "ragtune_source.json"
            if source.exists():
                shutil.copy2(source, staging / source.name)
            adapter_config = staging / "adapter_config.json"
            if adapter_config.exists():  # point the adapter at the base it was trained on
                settings = json.loads(adapter_config.read_text())
                settings["base_model_name_or_path"] = str(base.resolve())
                adapter_config.write_text(json.dumps(settings, indent=2))
    except Exception as error:  # tokenizers reports a full disk as a bare Exception
        reason = write_failure(error, target.parent)
        raise TrainingError(
            f"cannot save the trained model to {target}: {reason}; "
            "the checkpoints are kept, free space and run again with --resume"
        ) from None


def _write_run_config(output: Path, config: TrainConfig, base: Path) -> None:
    import yaml

    settings = config_as_dict(config)
    settings["resolved_base"] = str(base)
    write_run_file(output / "config.yaml", yaml.safe_dump(settings, sort_keys=False))


def _write_summary(
    output: Path, result: Any, saved: Path, report: EncodeReport, train_n: int, eval_n: int
) -> None:
    from ragtune.train.loop.report import run_figures

    summary = {
        **run_figures(result, saved),
        "final_loss": result.final_loss,
        "eval_loss_start": result.eval_loss_start,
        "eval_loss_end": result.eval_loss_end,
        "train_examples": train_n,
        "eval_examples": eval_n,
        "records": report.records,
        "truncated": report.truncated,
        "skipped": report.skipped,
        **result.extra,
    }
    write_run_file(output / "summary.json", json.dumps(summary, indent=2))
