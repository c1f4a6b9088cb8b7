"""The training loop shared by supervised fine-tuning and DPO.

One optimizer step = ``grad_accum`` micro-batches on each of ``world`` processes.
The order of the data is a pure function of (seed, epoch), so a resumed run takes
exactly the batches the interrupted one would have taken next, and its loss curve
continues the interrupted one.
"""

from __future__ import annotations

import json
import math
import random
import resource
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch

from ragtune.atomic import write_failure
from ragtune.errors import TrainingError
from ragtune.train.config import TrainConfig, config_as_dict
from ragtune.train.loop import checkpoints, sharding
from ragtune.train.loop.progress import TrainingProgress
from ragtune.train.loop.report import RunResult, plot_losses

# Batches are formed within windows of this many batches sorted by length, so a batch
# holds sequences of similar length and little padding (as Trainer's group_by_length).
LENGTH_WINDOW = 50
# Settings a resumed run must share with the interrupted one, or its batches differ.
RESUME_KEYS = ("method", "max_length", "batch_size", "grad_accum", "seed", "packing", "mask_prompt")


class Objective(Protocol):
    """What differs between SFT and DPO: how items batch and what the loss is."""

    name: str

    def length(self, item: Any) -> int: ...
    def labelled(self, item: Any) -> int: ...
    def collate(self, items: Sequence[Any], pad_id: int) -> dict[str, torch.Tensor]: ...
    def loss(
        self, network: torch.nn.Module, batch: dict[str, torch.Tensor], label_total: float
    ) -> tuple[torch.Tensor, dict[str, float]]: ...
    def evaluate(
        self, network: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[float, int, dict[str, float]]: ...


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int
) -> list[list[int]]:
    """Item indices batched for one epoch: shuffled, then grouped by length, then shuffled."""
    order = list(range(len(lengths)))
    rng = random.Random(seed * 1_000_003 + epoch)
    rng.shuffle(order)
    window = batch_size * LENGTH_WINDOW
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def steps_per_epoch(batches: int, micro_per_step: int) -> int:
    return max(1, math.ceil(batches / micro_per_step))


def step_micro_batches(
    plan: list[list[int]], within: int, micro_per_step: int, rank: int, world: int
) -> list[list[int]]:
    """This process's micro-batches for one step; a short last step wraps to the start."""
    wanted = range(within * micro_per_step, (within + 1) * micro_per_step)
    mine = [index for index in wanted if index % world == rank]
    return [plan[index % len(plan)] for index in mine]


class LoopSettings(Protocol):
    """What the loop reads of a run's settings (fine-tuning's and pretraining's alike)."""

    batch_size: int
    grad_accum: int
    seed: int
    max_steps: int | None
    epochs: float
    max_grad_norm: float
    eval_every: int | None
    save_every: int
    keep_checkpoints: int


class BatchOrder(Protocol):
    """Which items the micro-batches of a step hold: a pure function of the step, so a
    resumed run takes exactly the batches the interrupted one would have taken."""

    steps_per_epoch: int

    def micro_batches(self, step: int, rank: int, world: int) -> list[list[int]]: ...


class LengthGroupedEpochs:
    """Fine-tuning's order: every item once an epoch, in batches of similar length."""

    def __init__(
        self, lengths: Sequence[int], batch_size: int, seed: int, micro_per_step: int
    ) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.micro_per_step = micro_per_step
        first = epoch_batches(lengths, batch_size, seed, 0)
        self.steps_per_epoch = steps_per_epoch(len(first), micro_per_step)
        self._plans: dict[int, list[list[int]]] = {0: first}

    def plan(self, epoch: int) -> list[list[int]]:
        if epoch not in self._plans:
            self._plans = {epoch: epoch_batches(self.lengths, self.batch_size, self.seed, epoch)}
        return self._plans[epoch]

    def micro_batches(self, step: int, rank: int, world: int) -> list[list[int]]:
        epoch, within = divmod(step - 1, self.steps_per_epoch)
        return step_micro_batches(self.plan(epoch), within, self.micro_per_step, rank, world)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


class Trainer:
    """Runs an objective over items with checkpoints, evaluation, progress and metrics."""

    def __init__(
        self,
        config: LoopSettings,
        objective: Objective,
        model: torch.nn.Module,
        network: torch.nn.Module,
        train_items: Sequence[Any],
        eval_items: Sequence[Any],
        pad_id: int,
        output: Path,
        accelerator: Any,
        on_step: Callable[[dict[str, Any]], None] | None = None,
        order: BatchOrder | None = None,
    ) -> None:
        self.config = config
        self.objective = objective
        self.model = model  # what is saved: the (PEFT) model
        self.network = network  # what is called: the loss wrapper, data-parallel if so
        self.train_items = train_items
        self.eval_items = eval_items
        self.pad_id = pad_id
        self.output = output
        self.accelerator = accelerator
        self.on_step = on_step
        self.world = accelerator.num_processes
        self.rank = accelerator.process_index
        self.micro_per_step = config.grad_accum * self.world
        if order is None:
            lengths = [objective.length(item) for item in train_items]
            micro = self.micro_per_step
            order = LengthGroupedEpochs(lengths, config.batch_size, config.seed, micro)
        self.order = order
        self.steps_per_epoch = order.steps_per_epoch
        self.total_steps = config.max_steps or max(
            1, math.ceil(config.epochs * self.steps_per_epoch)
        )
        sharding.check_run(accelerator, self.total_steps, config.save_every, config.grad_accum)

    def run(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        resume: checkpoints.Checkpoint | None,
    ) -> RunResult:
        history: list[dict[str, Any]] = []
        start_step = 0
        eval_start: float | None = None
        if resume is not None:
            checkpoints.restore(resume, self.model, optimizer, scheduler)
            history = list(resume.state.get("history", []))
            start_step = resume.step
            eval_start = resume.state.get("eval_loss_start")
        elif self.eval_items:
            eval_start = self.evaluate()["loss"]
            history.append({"step": 0, "eval_loss": eval_start})
        tokens = 0
        began = time.perf_counter()
        training = 0.0  # seconds in optimizer steps: evaluation and saving excluded
        eval_end = eval_start
        with TrainingProgress(
            self.objective.name,
            self.total_steps,
            start_step,
            enabled=self.accelerator.is_main_process,
        ) as progress:
            for step in range(start_step + 1, self.total_steps + 1):
                stepped = time.perf_counter()
                record, step_tokens = self.train_step(step, optimizer, scheduler)
                training += time.perf_counter() - stepped
                tokens += step_tokens
                record["tokens_per_second"] = round(tokens / training, 1) if training else 0.0
                if self.should_evaluate(step):
                    eval_end = self.evaluate()["loss"]
                    record["eval_loss"] = eval_end
                history.append(record)
                progress.advance(record)
                if self.on_step is not None:
                    self.on_step(record)
                if step % self.config.save_every == 0 and step < self.total_steps:
                    self.save(step, optimizer, scheduler, history, eval_start)
        seconds = time.perf_counter() - began
        losses = [h["loss"] for h in history if "loss" in h]
        return RunResult(
            steps=self.total_steps,
            seconds=seconds,
            train_seconds=training,
            tokens=tokens,
            peak_rss_mb=peak_rss_mb(),
            peak_gpu_mb=(
                torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
            ),
            final_loss=losses[-1] if losses else None,
            eval_loss_start=eval_start,
            eval_loss_end=eval_end,
            history=history,
            resumed_from=start_step if resume is not None else None,
        )

    def should_evaluate(self, step: int) -> bool:
        if not self.eval_items:
            return False
        if step == self.total_steps:
            return True
        every = self.config.eval_every or self.config.save_every
        return step % every == 0

    def train_step(
        self, step: int, optimizer: torch.optim.Optimizer, scheduler: Any
    ) -> tuple[dict[str, Any], int]:
        self.network.train()
        micro = self.order.micro_batches(step, self.rank, self.world)
        items = [[self.train_items[i] for i in batch] for batch in micro]
        # The loss is a mean over every label of the step, on all processes together:
        # data-parallel averaging then equals one process accumulating the same batches.
        own_labels = sum(self.objective.labelled(item) for batch in items for item in batch)
        label_total = max(1.0, self._sum_across_processes(float(own_labels)) / self.world)
        totals: dict[str, float] = {}
        tokens = 0
        for number, batch_items in enumerate(items):
            batch = self.objective.collate(batch_items, self.pad_id)
            batch = {key: value.to(self.accelerator.device) for key, value in batch.items()}
            mask = batch.get("attention_mask")  # contiguous blocks (pretraining) have none
            tokens += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
            last = number == len(items) - 1
            # Gradients are synchronised across processes on the last micro-batch only.
            with self.accelerator.no_sync(self.network) if not last else nullcontext():
                with self.accelerator.autocast():
                    loss, metrics = self.objective.loss(self.network, batch, label_total)
                self.accelerator.backward(loss)
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value
        if self.config.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(self.network.parameters(), self.config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        record: dict[str, Any] = {"step": step, "epoch": round((step) / self.steps_per_epoch, 3)}
        record["lr"] = scheduler.get_last_lr()[0]
        for key, value in self._mean_across_processes(totals).items():
            record[key] = value
        tokens = int(self._sum_across_processes(float(tokens)))
        return record, tokens

    def _mean_across_processes(self, values: dict[str, float]) -> dict[str, float]:
        if self.world == 1 or not values:
            return values
        tensor = torch.tensor(list(values.values()), device=self.accelerator.device)
        reduced = self.accelerator.reduce(tensor, reduction="mean")
        return dict(zip(values, reduced.tolist(), strict=True))

    def _sum_across_processes(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], device=self.accelerator.device)
        return float(self.accelerator.reduce(tensor, reduction="sum").item())

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.network.eval()
        total, count = 0.0, 0
        sums: dict[str, float] = {}
        size = self.config.batch_size
        shard = list(range(self.rank, len(self.eval_items), self.world))
        for start in range(0, len(shard), size):
            items = [self.eval_items[i] for i in shard[start : start + size]]
            batch = self.objective.collate(items, self.pad_id)
            batch = {key: value.to(self.accelerator.device) for key, value in batch.items()}
            with self.accelerator.autocast():
                loss_sum, labelled, metrics = self.objective.evaluate(self.network, batch)
            total += loss_sum
            count += labelled
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value
        if self.world > 1:
            packed = torch.tensor([total, float(count)], device=self.accelerator.device)
            total, count_f = self.accelerator.reduce(packed, reduction="sum").tolist()
            count = int(count_f)
        result = {"loss": round(total / count, 6) if count else float("nan")}
        result.update({key: value / max(1, len(shard)) for key, value in sums.items()})
        return result

    def save(
        self,
        step: int,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        history: list[dict[str, Any]],
        eval_start: float | None,
    ) -> None:
        self.accelerator.wait_for_everyone()
        taken = checkpoints.snapshot(self.model, optimizer)  # every process: shards gathered
        if self.accelerator.is_main_process:
            state = {
                "history": history,
                "eval_loss_start": eval_start,
                "config": config_as_dict(self.config),
                "total_steps": self.total_steps,
            }
            checkpoints.save_checkpoint(
                self.output,
                step,
                taken,
                scheduler,
                state,
                self.config.keep_checkpoints,
            )
            write_metrics(self.output, history)
        self.accelerator.wait_for_everyone()


def write_metrics(output: Path, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl (one line per step) and loss.png, rewritten whole: a resume continues them."""
    lines = "".join(json.dumps(record) + "\n" for record in history)
    try:
        (output / "metrics.jsonl").write_text(lines, encoding="utf-8")
        plot_losses(history, output / "loss.png")
    except OSError as error:
        reason = write_failure(error, output)
        raise TrainingError(f"cannot write metrics in {output}: {reason}") from None


def check_resumable(config: TrainConfig, checkpoint: checkpoints.Checkpoint) -> None:
    saved = checkpoint.state.get("config", {})
    current = config_as_dict(config)
    differ = [key for key in RESUME_KEYS if saved.get(key) != current.get(key)]
    if differ:
        changes = ", ".join(f"{key} {saved.get(key)!r} -> {current.get(key)!r}" for key in differ)
        raise TrainingError(f"cannot resume {checkpoint.path}: settings changed ({changes})")
