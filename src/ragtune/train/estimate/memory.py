"""Peak memory of a training run, split the way it is spent.

- weights: every parameter, 4 bytes (fp32: the CPU's precision, and pretraining's master
  weights under autocast), 2 (fine-tuning's bf16/fp16 on a GPU),
  or about 0.52 for the linear layers under QLoRA (4-bit NF4, double-quantised scales);
- gradients: 4 bytes a trainable parameter (all of them, or LoRA's adapters only);
- optimizer states: AdamW's two moments, 8 bytes a trainable parameter;
- activations: what the backward pass keeps, per token and layer (fp32 values):
  ``ACT_PER_D·d + ACT_PER_F·f`` (norm inputs and outputs, q/k/v before and after rotary,
  attention output, the residual stream, gate, up, their product) plus, with LoRA,
  each adapted layer's dropped-out input and its mask; gradient checkpointing keeps only
  each layer's input and one layer's activations at a time;
- logits: pretraining materialises ``tokens x vocab`` fp32 logits, their log-softmax and
  its gradient; fine-tuning computes the head 256 rows at a time (train/models/trainable.py);
- on this machine, the process itself: the interpreter with what the run imports
  (measured per route: fine-tuning's, and pretraining's with a tiny model built), what
  preparing the data left allocated (training.tokenizing_bytes: the BPE trainer's tables
  and the token file's encodings, freed but kept by the allocator), and the allocator's
  slack over the live tensors (``ALLOCATOR_SLACK``);
- loading a base model reads its safetensors through a memory map whose pages count in
  the process's RSS while the weights are copied out: a peak of twice the weights at
  load time, which the training peak usually exceeds.
"""

from __future__ import annotations

from dataclasses import dataclass

from ragtune.train.estimate.compute import Batch, Method, linear_layers, trainable_parameters
from ragtune.train.estimate.shapes import ModelSpec

ACT_PER_D = 16
ACT_PER_F = 4
HEAD_CHUNK = 256  # rows of fine-tuning's output head computed at once
# glibc malloc and torch's CPU allocator keep freed blocks: live tensors x this.
ALLOCATOR_SLACK = 1.0


@dataclass(frozen=True)
class MemoryEstimate:
    process: float  # bytes: the interpreter and libraries (0 on a GPU)
    weights: float
    gradients: float
    optimizer: float
    activations: float
    logits: float

    @property
    def total(self) -> float:
        return (
            self.process
            + self.weights
            + self.gradients
            + self.optimizer
            + self.activations
            + self.logits
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "process": self.process,
            "weights": self.weights,
            "gradients": self.gradients,
            "optimizer": self.optimizer,
            "activations": self.activations,
            "logits": self.logits,
            "total": self.total,
        }


# NF4: 4 bits a weight, an 8-bit scale per 64 weights, double-quantised (fp32 per 256 scales)
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)


def weight_bytes(model: ModelSpec, method: Method, value_bytes: int) -> float:
    """The base model's weights; QLoRA quantises the decoder's linear layers only."""
    if method.name == "pretrain":  # fp32 master weights, bf16 autocast on a GPU
        return float(model.parameters * 4)
    if not method.qlora:
        return float(model.parameters * value_bytes)
    linear = model.shape.layers * sum(k * n for k, n in linear_layers(model))
    return linear * NF4_BYTES + (model.parameters - linear) * value_bytes


def training_memory(
    model: ModelSpec,
    method: Method,
    batch: Batch,
    value_bytes: int = 4,
    process_bytes: float = 0.0,
    devices: int = 1,
) -> MemoryEstimate:
    """Peak bytes of one training process at its largest micro-batch ``batch``."""
    trainable = trainable_parameters(model, method)
    weights = weight_bytes(model, method, value_bytes)
    if method.lora:  # the adapters are trained in fp32 even on a bf16 base
        weights += trainable * 4
    gradients = trainable * 4.0
    optimizer = trainable * 8.0
    activations = activation_bytes(model, method, batch, value_bytes)
    logits = logit_bytes(model, method, batch)
    slack = ALLOCATOR_SLACK if process_bytes else 1.0
    return MemoryEstimate(
        process_bytes,
        weights,
        gradients * slack,
        optimizer,
        activations * slack,
        logits * slack,
    )


def activation_bytes(model: ModelSpec, method: Method, batch: Batch, value_bytes: int) -> float:
    shape = model.shape
    tokens = batch.tokens
    per_token = ACT_PER_D * shape.dim + ACT_PER_F * shape.ffn_dim
    per_layer = tokens * per_token * value_bytes
    if method.lora and method.lora_dropout > 0:
        inputs = sum(k for k, _ in linear_layers(model))
        per_layer += tokens * inputs * (value_bytes + 1)  # dropped-out input + bool mask
    if method.checkpointing:
        return shape.layers * tokens * shape.dim * value_bytes + per_layer
    return shape.layers * per_layer


def logit_bytes(model: ModelSpec, method: Method, batch: Batch) -> float:
    if method.name == "pretrain":
        return 3.0 * batch.head_rows * model.vocab * 4
    rows = min(batch.head_rows, HEAD_CHUNK)
    if method.lora:  # the frozen head's gradient kept for the backward pass: rows x d
        return 2.0 * rows * model.vocab * 4 + batch.head_rows * model.shape.dim * 4
    return 3.0 * rows * model.vocab * 4 + batch.head_rows * model.shape.dim * 4
