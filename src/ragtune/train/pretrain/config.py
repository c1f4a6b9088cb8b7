"""Pretraining settings: one dataclass, filled from a YAML recipe and then from CLI flags.

The recipe keys are the field names below (``examples/recipes/pretrain-*.yaml``); the same
loader as fine-tuning's checks them (an unknown key or a wrong type is an error naming it).
Defaults follow nanoGPT's small-model recipes: AdamW with beta2 0.99, linear warmup then
cosine decay to a tenth of the peak learning rate, weight decay 0.1 on matrices only,
gradients clipped at 1.0.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from typing import Literal

from ragtune.errors import TrainingError
from ragtune.train.config import Precision
from ragtune.train.pretrain.sizes import ModelShape, preset

Compile = Literal["auto", "on", "off"]
# What --tokenizer may name besides a directory: a tokenizer trained on the run's corpus.
TRAINED_TOKENIZERS = ("bpe", "char")
DEFAULT_SIZE = "1m"
DEFAULT_BPE_VOCAB = 8192


@dataclass
class PretrainConfig:
    """Everything one pretraining run needs besides the text itself."""

    data: str | None = None
    from_index: str | None = None
    output: str = "ragtune-pretrain"

    # tokenizer: "bpe" or "char" (trained on the corpus into RUN/tokenizer) or a directory
    tokenizer: str = "bpe"
    vocab_size: int | None = None  # bpe: 8192; char: every character seen

    # model: a preset, then explicit dimensions on top of it
    size: str | None = None  # None: 1m unless all of layers, heads, dim are given
    layers: int | None = None
    heads: int | None = None
    kv_heads: int | None = None
    dim: int | None = None
    ffn: int | None = None
    context: int | None = None
    dropout: float = 0.0  # attention dropout (a Llama has no other)

    # data
    val_fraction: float = 0.1

    # optimisation
    batch_size: int = 12
    grad_accum: int = 1
    max_steps: int | None = 2000
    epochs: float = 1.0  # used when max_steps is None: passes over the training tokens
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    decay_steps: int | None = None  # None: until the last step
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    max_grad_norm: float = 1.0
    seed: int = 1337

    # hardware
    precision: Precision = "auto"
    compile: Compile = "auto"  # auto: on CUDA only (measured no gain on a 2-core CPU)

    # evaluation, samples, checkpoints
    eval_every: int | None = 250
    eval_batches: int = 20
    sample_every: int | None = None
    sample_prompt: str = "\n"
    sample_tokens: int = 200
    temperature: float = 0.8
    top_k: int = 200
    save_every: int = 500
    keep_checkpoints: int = 2

    # where the run came from, for the summary; not settable from a recipe
    recipe: str | None = field(default=None, metadata={"internal": True})
    # which tokenizer the run trains with, so a resume with another one is refused
    tokenizer_digest: str | None = field(default=None, metadata={"internal": True})

    @property
    def lr(self) -> float:
        return self.learning_rate

    def shape(self) -> ModelShape:
        """The model's dimensions: the preset, with any dimension given replacing its own."""
        explicit = bool(self.layers and self.heads and self.dim)
        name = self.size or (None if explicit else DEFAULT_SIZE)
        # Without a preset, the context defaults to 256 (the 1m preset's).
        base = preset(name) if name else ModelShape(layers=0, heads=0, dim=0, context=256)
        return ModelShape(
            layers=self.layers or base.layers,
            heads=self.heads or base.heads,
            dim=self.dim or base.dim,
            context=self.context or base.context,
            kv_heads=self.kv_heads if self.kv_heads is not None else base.kv_heads,
            ffn=self.ffn if self.ffn is not None else base.ffn,
        ).check()

    def validate(self) -> PretrainConfig:
        """Reject settings no run could use, with the setting's name in the message."""
        for name in ("batch_size", "grad_accum", "save_every", "eval_batches", "sample_tokens"):
            if getattr(self, name) <= 0:
                raise TrainingError(f"{name} must be positive, not {getattr(self, name)}")
        for name in ("layers", "heads", "kv_heads", "dim", "ffn", "context", "vocab_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise TrainingError(f"{name} must be positive, not {value}")
        for name in ("max_steps", "eval_every", "sample_every", "decay_steps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise TrainingError(f"{name} must be positive, not {value}")
        if self.keep_checkpoints < 1:
            raise TrainingError(f"keep_checkpoints must be at least 1, not {self.keep_checkpoints}")
        if not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise TrainingError(f"epochs must be a positive number, not {self.epochs}")
        if not 0 < self.val_fraction < 0.5:
            raise TrainingError(f"val_fraction must be in (0, 0.5), not {self.val_fraction}")
        if self.warmup_steps < 0:
            raise TrainingError(f"warmup_steps must be 0 or more, not {self.warmup_steps}")
        for name in ("learning_rate", "temperature"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise TrainingError(f"{name} must be a positive number, not {value}")
        if not (0 <= self.min_lr <= self.learning_rate):
            raise TrainingError(
                f"min_lr must be in [0, learning_rate {self.learning_rate}], not {self.min_lr}"
            )
        for name in ("beta1", "beta2", "dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise TrainingError(f"{name} must be in [0, 1), not {getattr(self, name)}")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise TrainingError("weight_decay and max_grad_norm must be 0 or more")
        if self.top_k < 0:
            raise TrainingError(f"top_k must be 0 (off) or more, not {self.top_k}")
        for name in ("precision", "compile"):
            choices = typing.get_args(typing.get_type_hints(PretrainConfig)[name])
            if getattr(self, name) not in choices:
                raise TrainingError(
                    f"{name} must be one of {', '.join(choices)}; not {getattr(self, name)!r}"
                )
        if not self.tokenizer.strip():
            raise TrainingError("tokenizer must be bpe, char or a tokenizer directory")
        self.shape()  # dimensions that cannot make a model fail here, before any data is read
        return self
