"""Next-token prediction on contiguous windows of the token file, as nanoGPT trains.

An item is a window's start offset into the train (or val) tokens; a batch is
``batch_size`` windows of ``context + 1`` tokens, inputs and targets shifted by one. There
is no padding and no attention mask: every position predicts the next token.

The windows of step ``s`` are drawn from a generator seeded with ``(seed, s)``, so the
batch sequence is a pure function of the step: a resumed run takes exactly the windows
the interrupted one would have taken, and data-parallel processes split one draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class RandomWindows:
    """The loop's batch order for pretraining (see ``loop.trainer.BatchOrder``)."""

    def __init__(
        self, tokens: int, context: int, batch_size: int, micro_per_step: int, seed: int
    ) -> None:
        self.starts = tokens - context  # a window needs context + 1 tokens
        self.batch_size = batch_size
        self.micro_per_step = micro_per_step
        self.seed = seed
        # An "epoch" is as many tokens as the train split holds, for the progress record.
        per_step = batch_size * context * micro_per_step
        self.steps_per_epoch = max(1, math.ceil(tokens / per_step))

    def micro_batches(self, step: int, rank: int, world: int) -> list[list[int]]:
        generator = np.random.default_rng([self.seed, step])
        drawn = generator.integers(0, self.starts, size=(self.micro_per_step, self.batch_size))
        return [drawn[i].tolist() for i in range(self.micro_per_step) if i % world == rank]


def evaluation_windows(start: int, tokens: int, context: int, count: int, seed: int) -> list[int]:
    """Fixed validation windows within ``[start, start + tokens)``: the same ones at every
    evaluation, so the points of the curve compare."""
    generator = np.random.default_rng([seed, 0x7E57])
    return (start + generator.integers(0, tokens - context, size=count)).tolist()


class NextTokenLoss(nn.Module):
    """Wraps a causal LM: forward(input_ids, targets) -> mean cross-entropy over all tokens.

    The module ``accelerator.prepare`` wraps (and ``torch.compile`` compiles when asked),
    so data-parallel gradient sync sees the model's parameters through it.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=input_ids, use_cache=False).logits
        return nn.functional.cross_entropy(
            logits.float().view(-1, logits.shape[-1]), targets.reshape(-1)
        )


class PretrainObjective:
    """The loop's objective (see ``loop.trainer.Objective``) over windows of a token array.

    Items are offsets into the whole token file: training windows lie before the
    validation split, evaluation windows after it (see ``evaluation_windows``)."""

    name = "pretraining"

    def __init__(self, tokens: np.ndarray, context: int) -> None:
        self.tokens = tokens
        self.context = context

    def length(self, item: int) -> int:
        return self.context

    def labelled(self, item: int) -> int:
        return self.context

    def collate(self, items: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        width = self.context + 1
        windows = np.stack([np.asarray(self.tokens[start : start + width]) for start in items])
        block = torch.from_numpy(windows.astype(np.int64))
        return {"input_ids": block[:, :-1], "targets": block[:, 1:]}

    def loss(
        self, network: nn.Module, batch: dict[str, torch.Tensor], label_total: float
    ) -> tuple[torch.Tensor, dict[str, float]]:
        mean = network(batch["input_ids"], batch["targets"])
        # The loop divides by the step's label count; a mean over this micro-batch's
        # tokens, weighted by its share of them, is the same thing.
        scaled = mean * (batch["targets"].numel() / label_total)
        return scaled, {"loss": float(scaled.detach())}

    def evaluate(
        self, network: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[float, int, dict[str, float]]:
        count = batch["targets"].numel()
        return float(network(batch["input_ids"], batch["targets"])) * count, count, {}
