"""Supervised fine-tuning: mean negative log-likelihood of the labelled (reply) tokens."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ragtune.train.data.encode import IGNORE, Example


def pad_examples(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence of the batch; padding carries no loss."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        size = len(example.input_ids)
        ids[row, :size] = torch.tensor(example.input_ids)
        labels[row, :size] = torch.tensor(example.labels)
        mask[row, :size] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class SupervisedObjective:
    name = "fine-tuning"

    def length(self, item: Example) -> int:
        return len(item.input_ids)

    def labelled(self, item: Example) -> int:
        # the first token is never a target (nothing predicts it)
        return sum(1 for label in item.labels[1:] if label != IGNORE)

    def collate(self, items: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
        return pad_examples(items, pad_id)

    def loss(
        self, network: torch.nn.Module, batch: dict[str, torch.Tensor], label_total: float
    ) -> tuple[torch.Tensor, dict[str, float]]:
        logprobs, _ = network(**batch)
        # Divided by the whole step's label count, so accumulated micro-batches weigh
        # every token equally whatever their padding or length.
        loss = -logprobs.sum() / label_total
        return loss, {"loss": float(loss.detach())}

    def evaluate(
        self, network: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[float, int, dict[str, float]]:
        logprobs, counts = network(**batch)
        return float(-logprobs.sum()), int(counts.sum()), {}
