"""Model shapes for training from scratch: named presets, parameters, FLOPs and memory.

Every model is a Llama (RMSNorm, rotary positions, SwiGLU feed-forward, tied input and
output embeddings), so the rest of the toolchain (finetune, merge, GGUF export, llama.cpp)
takes it as it takes SmolLM2. The feed-forward width is 8/3 of the model width rounded up
to a multiple of 64, Llama's rule, which keeps its FLOPs those of a 4x GELU MLP.

Estimates, so a size that cannot fit is refused before anything is allocated:

- parameters: embeddings ``V·d`` (shared with the output head) + per layer
  ``4·d² (attention, fewer with grouped KV heads) + 3·d·f (SwiGLU) + 2·d (norms)``;
- training FLOPs per token: ``6·N + 12·L·d·T`` (the forward and backward matmuls of the
  N non-embedding parameters and the output head, plus attention over a context of T:
  PaLM's appendix B, as nanoGPT's MFU estimate);
- training memory: weights, gradients and two AdamW moments in fp32 (16 bytes a
  parameter) plus activations, about ``b·T·L·(18·d + 2.5·f + 2·h·T)`` values kept for the
  backward pass, plus the logits ``b·T·V`` three times (logits, softmax, gradient).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ragtune.errors import TrainingError


@dataclass(frozen=True)
class ModelShape:
    layers: int
    heads: int
    dim: int
    context: int
    kv_heads: int | None = None  # None: as many as heads (no grouped-query attention)
    ffn: int | None = None  # None: Llama's 8/3·dim rounded up to 64

    @property
    def ffn_dim(self) -> int:
        return self.ffn or 64 * math.ceil(8 * self.dim / 3 / 64)

    @property
    def kv(self) -> int:
        return self.kv_heads or self.heads

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def as_dict(self, vocab: int) -> dict[str, int]:
        """The dimensions as written in config.yaml and summary.json."""
        return {
            "layers": self.layers,
            "heads": self.heads,
            "kv_heads": self.kv,
            "dim": self.dim,
            "ffn": self.ffn_dim,
            "context": self.context,
            "vocab": vocab,
        }

    def check(self) -> ModelShape:
        for name in ("layers", "heads", "dim", "context"):
            if getattr(self, name) <= 0:
                raise TrainingError(f"{name} must be positive, not {getattr(self, name)}")
        if self.dim % self.heads:
            raise TrainingError(f"dim {self.dim} must be a multiple of heads {self.heads}")
        if self.head_dim % 2:
            raise TrainingError(
                f"dim / heads = {self.head_dim} must be even (rotary positions rotate pairs)"
            )
        if self.heads % self.kv:
            raise TrainingError(f"heads {self.heads} must be a multiple of kv_heads {self.kv}")
        return self


# From about 1M to about 125M parameters (with an 8k vocabulary); context grows with size.
PRESETS: dict[str, ModelShape] = {
    "1m": ModelShape(layers=4, heads=4, dim=128, context=256),
    "5m": ModelShape(layers=6, heads=4, dim=256, context=512),
    "15m": ModelShape(layers=8, heads=6, dim=384, context=512),
    "45m": ModelShape(layers=12, heads=8, dim=512, context=1024),
    "125m": ModelShape(layers=16, heads=12, dim=768, context=1024),
}


def preset(name: str) -> ModelShape:
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise TrainingError(
            f"unknown size {name!r}; sizes: {', '.join(PRESETS)} "
            "(see ragtune pretrain --list-sizes)"
        ) from None


def parameters(shape: ModelShape, vocab: int) -> int:
    """Trainable parameters, the tied embedding counted once."""
    return vocab * shape.dim + shape.layers * layer_parameters(shape) + shape.dim


def layer_parameters(shape: ModelShape) -> int:
    d, kv_dim = shape.dim, shape.kv * shape.head_dim
    attention = 2 * d * d + 2 * d * kv_dim
    return attention + 3 * d * shape.ffn_dim + 2 * d


def flops_per_token(shape: ModelShape, vocab: int) -> int:
    """Training FLOPs per token (forward + backward), the output head included."""
    non_embedding = shape.layers * layer_parameters(shape) + vocab * shape.dim  # head matmul
    return 6 * non_embedding + 12 * shape.layers * shape.dim * shape.context


def training_bytes(
    shape: ModelShape, vocab: int, batch_size: int, value_bytes: int = 4, shards: int = 1
) -> int:
    """Peak memory of one training step on one process, estimated (see the module
    docstring); weights, gradients and optimizer state split over ``shards`` processes
    (FSDP full shard, ZeRO-3), activations not."""
    states = 16 * parameters(shape, vocab) // shards
    tokens = batch_size * shape.context
    per_layer = 18 * shape.dim + 2.5 * shape.ffn_dim + 2 * shape.heads * shape.context
    activations = tokens * shape.layers * per_layer * value_bytes
    logits = 3 * tokens * vocab * 4  # the loss is computed in fp32
    return int(states + activations + logits)


def human(count: float, unit: str = "") -> str:
    """12.3M, 1.2G, 850K: a count the way people say it."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if count >= scale:
            return f"{count / scale:.1f}{suffix}{unit}"
    return f"{count:.0f}{unit}"
