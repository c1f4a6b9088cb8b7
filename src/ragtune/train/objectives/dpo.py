"""Direct Preference Optimization (Rafailov et al., 2023), the sigmoid loss TRL defaults to.

    loss = -log sigmoid(beta * ((log pi(chosen) - log ref(chosen))
                                - (log pi(rejected) - log ref(rejected))))

With LoRA the reference is the same network with its adapter switched off, so no second
copy of the model is held; with full fine-tuning a frozen copy is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch.nn import functional

from ragtune.train.data.encode import PairExample
from ragtune.train.models.trainable import SelectiveLoss
from ragtune.train.objectives.sft import pad_examples


class PreferenceObjective:
    name = "aligning (DPO)"

    def __init__(self, reference: SelectiveLoss, beta: float, adapter_model: Any = None) -> None:
        self.reference = reference
        self.beta = beta
        self.adapter_model = adapter_model  # a PEFT model whose adapter is switched off

    def length(self, item: PairExample) -> int:
        return max(len(item.chosen.input_ids), len(item.rejected.input_ids))

    def labelled(self, item: PairExample) -> int:
        return 1  # the loss is a mean over pairs

    def collate(self, items: Sequence[PairExample], pad_id: int) -> dict[str, torch.Tensor]:
        """Chosen sequences first, then rejected, in one batch: one forward pass for both."""
        return pad_examples([p.chosen for p in items] + [p.rejected for p in items], pad_id)

    def _reference_off(self) -> AbstractContextManager[Any]:
        if self.adapter_model is None:
            return nullcontext()
        return self.adapter_model.disable_adapter()  # type: ignore[no-any-return]

    def margins(self, network: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """beta * (policy log-ratio of chosen over rejected - the reference's), per pair."""
        policy, _ = network(**batch)
        with torch.no_grad(), self._reference_off():
            reference, _ = self.reference(**batch)
        pairs = policy.shape[0] // 2
        policy_ratio = policy[:pairs] - policy[pairs:]
        reference_ratio = reference[:pairs] - reference[pairs:]
        return self.beta * (policy_ratio - reference_ratio)

    def loss(
        self, network: torch.nn.Module, batch: dict[str, torch.Tensor], label_total: float
    ) -> tuple[torch.Tensor, dict[str, float]]:
        margins = self.margins(network, batch)
        loss = -functional.logsigmoid(margins).sum() / label_total
        detached = margins.detach()
        return loss, {
            "loss": float(loss.detach()),
            "margin": float(detached.sum()) / label_total,
            "accuracy": float((detached > 0).float().sum()) / label_total,
        }

    def evaluate(
        self, network: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[float, int, dict[str, float]]:
        margins = self.margins(network, batch)
        loss = -functional.logsigmoid(margins).sum()
        return float(loss), int(margins.shape[0]), {"margin": float(margins.sum())}
