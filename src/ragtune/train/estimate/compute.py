"""Training FLOPs and the time they take: per micro-batch, per step, per run.

FLOPs (what is reported, the convention of Kaplan et al. and PaLM): a token trained costs
``6·N`` (forward 2·N, backward 4·N) for the N non-embedding parameters and the output
head, plus ``12·L·d·T`` for attention over a context of T. LoRA freezes the base, whose
weight gradients are never computed: ``4·N`` a token plus the adapters' own ``6·r·(k+n)``.
Gradient checkpointing runs the layers' forward pass twice: ``+2·N``. An evaluation pass
is a forward pass: ``2·N``.

Time on a GPU profile: FLOPs / (peak x MFU x GPUs). Time on this machine is modelled op
by op, from what ``hardware.measure_this`` measured, because a small model on a CPU is not
matmul-bound: each linear layer's three matmuls (forward, input gradient, weight
gradient; LoRA skips the last) at the rate measured for that width and row count, LoRA's
rank-r matmuls and its input dropout at their own measured costs, attention at the
measured rate of the SDPA kernel, the output head, the logits at the measured cost of
cross-entropy, a trained vocabulary's dense gradients (with the page faults of fresh
memory), the other element-wise work (norms, rotary, activations, residuals) at the
measured cost of an element, the fixed and per-layer dispatch cost measured on a tiny
Llama, the optimizer's pass over its states at the measured memory bandwidth, and the
first step's fresh pages for the gradients and optimizer states.
"""

from __future__ import annotations

from dataclasses import dataclass

from ragtune.train.estimate.hardware import ROWS, Hardware, Machine
from ragtune.train.estimate.shapes import ModelSpec
from ragtune.train.pretrain.sizes import layer_parameters

# Element-wise values touched per token and layer, forward and backward together, as
# multiples of the width d and the feed-forward width f (norms, rotary embeddings,
# residual adds, SiLU and the gate product, attention's softmax rows): counted from a
# Llama layer's autograd graph and checked against measured steps (bench/estimate_accuracy.py).
ELEMENTS_PER_D = 40
ELEMENTS_PER_F = 12
# LoRA adds, per adapted linear and token, beyond its two small matmuls: dropout on the
# input (timed apart: drawing the mask costs several element-wise ops,
# Machine.dropout_seconds) and, on the output, the scale and the add (PEFT's
# ``result + lora_B(lora_A(dropout(x))) * scaling``) and the scale's gradient.
LORA_ELEMENTS_PER_OUTPUT = 3
# Bytes an unfused AdamW step moves a parameter: moments updated (lerp, mul, addcmul),
# the denominator built (sqrt, div, add: two temporaries), the update applied, gradients
# clipped and freshly allocated: about 25 fp32 passes.
UNFUSED_ADAMW_BYTES = 100


@dataclass(frozen=True)
class Batch:
    """One micro-batch: ``sequences`` padded to ``length`` tokens; ``head_rows`` of them go
    through the output head (all of them in pretraining, the labelled ones in SFT)."""

    sequences: int
    length: int
    head_rows: int
    trained_tokens: int  # non-padding tokens

    @property
    def tokens(self) -> int:
        return self.sequences * self.length


@dataclass(frozen=True)
class Method:
    """How the model is trained: what has gradients and what is recomputed."""

    name: str  # "pretrain", "full" or "lora"
    lora_r: int = 16
    lora_dropout: float = 0.05
    checkpointing: bool = False
    qlora: bool = False

    @property
    def lora(self) -> bool:
        return self.name == "lora"


def linear_layers(model: ModelSpec) -> list[tuple[int, int]]:
    """(in, out) of each linear layer of one decoder layer: q, k, v, o, gate, up, down."""
    d, kv, f = model.shape.dim, model.shape.kv * model.shape.head_dim, model.shape.ffn_dim
    return [(d, d), (d, kv), (d, kv), (d, d), (d, f), (d, f), (f, d)]


def lora_parameters(model: ModelSpec, r: int) -> int:
    """The adapters' parameters on every linear layer of every decoder layer (all-linear)."""
    return model.shape.layers * sum(r * (k + n) for k, n in linear_layers(model))


def trainable_parameters(model: ModelSpec, method: Method) -> int:
    return lora_parameters(model, method.lora_r) if method.lora else model.parameters


# ----------------------------------------------------------------------------- FLOPs


def batch_flops(model: ModelSpec, method: Method, batch: Batch) -> float:
    """Training FLOPs of one micro-batch (see the module docstring)."""
    shape = model.shape
    layers = shape.layers * layer_parameters(shape)  # the norms' few too, as sizes.py
    attention = 2 * shape.layers * shape.dim * batch.length  # forward, a token (causal: all T)
    head = shape.dim * model.vocab
    tokens, rows = batch.tokens, batch.head_rows
    if method.lora:
        flops = 4 * layers * tokens + 4 * head * rows + 6 * attention * tokens
        flops += 6 * lora_parameters(model, method.lora_r) * tokens
    else:
        flops = 6 * layers * tokens + 6 * head * rows + 6 * attention * tokens
    if method.checkpointing:
        flops += 2 * layers * tokens + 2 * attention * tokens
    return float(flops)


def eval_flops(model: ModelSpec, batch: Batch) -> float:
    shape = model.shape
    layers = shape.layers * layer_parameters(shape)
    attention = 2 * shape.layers * shape.dim * batch.length
    return float(
        2 * (layers + attention) * batch.tokens + 2 * shape.dim * model.vocab * batch.head_rows
    )


# ----------------------------------------------------------------------------- time


def batch_seconds(hardware: Hardware, model: ModelSpec, method: Method, batch: Batch) -> float:
    """Seconds of one micro-batch's forward and backward pass."""
    if hardware.machine is None:
        return _gpu_seconds(hardware, batch_flops(model, method, batch))
    return _cpu_batch(hardware.machine, model, method, batch, train=True)


def eval_seconds(hardware: Hardware, model: ModelSpec, batch: Batch) -> float:
    """Seconds of one evaluation micro-batch (a forward pass, no gradients)."""
    if hardware.machine is None:
        return _gpu_seconds(hardware, eval_flops(model, batch))
    return _cpu_batch(hardware.machine, model, Method("full"), batch, train=False)


def optimizer_seconds(hardware: Hardware, model: ModelSpec, method: Method) -> float:
    """One AdamW step and the gradient clipping before it, memory-bound: pretraining's
    fused AdamW reads values, gradients and two moments and writes three back, clipping
    reads the gradients (8 x 4 bytes a parameter); fine-tuning's unfused (foreach) AdamW
    makes about a dozen passes over fp32 arrays instead (``UNFUSED_ADAMW_BYTES``), and
    its gradients are allocated anew each step (``set_to_none``)."""
    trainable = trainable_parameters(model, method)
    per_parameter = 32 if method.name == "pretrain" else UNFUSED_ADAMW_BYTES
    if hardware.machine is None:
        assert hardware.gpu is not None
        return 32 * trainable / hardware.devices / hardware.gpu.bandwidth
    return per_parameter * trainable / hardware.machine.bandwidth


def first_touch_seconds(hardware: Hardware, model: ModelSpec, method: Method) -> float:
    """The first step writes the gradients and AdamW's two moments for the first time: new
    memory, a page fault a page (this machine only; measured, Machine.fresh_page_seconds).
    1.6 GB for SmolLM2's full fine-tuning: about half a second."""
    if hardware.machine is None:
        return 0.0
    fresh = 3 * trainable_parameters(model, method) * 4
    return fresh / PAGE_BYTES * hardware.machine.fresh_page_seconds


def _gpu_seconds(hardware: Hardware, flops: float) -> float:
    assert hardware.mfu is not None
    return flops / (hardware.peak_flops * hardware.mfu * hardware.devices)


def _cpu_batch(
    machine: Machine, model: ModelSpec, method: Method, batch: Batch, train: bool
) -> float:
    shape = model.shape
    rows, length = batch.tokens, batch.length
    # forward; input gradient; weight gradient (not for a frozen base); recomputed forward
    passes = 1 if not train else (2 if method.lora else 3) + (1 if method.checkpointing else 0)
    seconds = 0.0
    for k, n in linear_layers(model):
        seconds += passes * 2 * rows * k * n / machine.matmul_rate(rows, k, n)
        if method.lora and train:
            r = method.lora_r
            seconds += 3 * 2 * rows * (k * r + r * n) / _lora_rate(machine, rows, k, r)
    # scores and context, a head each: 2 matmuls of T x hd x T; causal, about half computed
    attention_passes = 1 if not train else 3 + (1 if method.checkpointing else 0)
    attention = attention_passes * 2 * 2 * rows * length * shape.dim / 2
    seconds += attention / _attention_rate(machine, length, shape.head_dim)
    seconds *= shape.layers
    # full fine-tuning recomputes each chunk of the trained head in the backward pass
    head_passes = 1 if not train else (2 if method.lora else 3 if method.name == "pretrain" else 4)
    head_rows = batch.head_rows
    seconds += (
        head_passes
        * 2
        * head_rows
        * shape.dim
        * model.vocab
        / machine.matmul_rate(head_rows, shape.dim, model.vocab)
    )
    elements: float = rows * (ELEMENTS_PER_D * shape.dim + ELEMENTS_PER_F * shape.ffn_dim)
    if method.lora and train:
        linear = linear_layers(model)
        elements += rows * LORA_ELEMENTS_PER_OUTPUT * sum(n for _, n in linear)
        if method.lora_dropout > 0:  # PEFT skips dropout (an identity) at 0
            dropped = rows * sum(k for k, _ in linear) * shape.layers
            seconds += dropped * machine.dropout_seconds
    elements *= shape.layers
    if not train:
        elements /= 3
    seconds += elements * machine.element_seconds
    seconds += head_rows * model.vocab * _logit_seconds(machine, method, train)
    if train and not method.lora:
        seconds += dense_gradient_seconds(machine, model, method, batch)
    probe = machine.probe
    # beyond the matmuls and element-wise work: a token's cost a layer (dispatch per row
    # block, rotary tables, softmax bookkeeping), measured on the tiny Llama; a forward
    # pass is about a third of a training step's
    per_token_layer = _token_layer_residual(machine) * rows * shape.layers
    if not train:
        seconds += probe["eval_fixed"] + shape.layers * probe["layer_eval"] + per_token_layer / 3
    elif method.lora:
        seconds += probe["lora_fixed"] + shape.layers * probe["layer_lora"] + per_token_layer
    else:
        seconds += probe["step_fixed"] + shape.layers * probe["layer_full"] + per_token_layer
    return seconds


# Cross-entropy passes over the logits, in multiples of a forward and backward pass
# (Machine.logit_seconds): pretraining's one; fine-tuning's trained head computes each
# chunk forward, then again and backward (checkpointed: 1.5); a frozen head computes the
# log-probabilities and their gradient in one pass (FrozenHeadLogprobs: 1); an evaluation
# is a forward pass (0.5).
LOGIT_PASSES = {"pretrain": 1.0, "full": 1.5, "lora": 1.0}
EVAL_LOGIT_PASSES = 0.5
# glibc serves an allocation over its largest dynamic mmap threshold (32 MiB on 64-bit)
# with fresh pages from the kernel every time; smaller ones reuse freed heap memory.
MMAP_THRESHOLD_MAX = 32 * 2**20
PAGE_BYTES = 4096


def _lora_rate(machine: Machine, rows: int, k: int, r: int) -> float:
    return machine.lora_rate or machine.matmul_rate(rows, k, r)


def _attention_rate(machine: Machine, length: int, head_dim: int) -> float:
    return machine.attention_rate or machine.matmul_rate(length, head_dim, length)


def _logit_seconds(machine: Machine, method: Method, train: bool) -> float:
    """Seconds a logit costs (the output head's rows x vocabulary), measured through
    cross-entropy; 4 plain element-wise passes where it was not measured."""
    per_logit = machine.logit_seconds or 4 * machine.element_seconds
    return per_logit * (LOGIT_PASSES.get(method.name, 1.0) if train else EVAL_LOGIT_PASSES)


def dense_gradient_seconds(
    machine: Machine, model: ModelSpec, method: Method, batch: Batch
) -> float:
    """A trained vocabulary's gradients, each micro-batch: the input embedding's backward
    writes a dense vocab x d gradient (zeroed, then the batch's rows added), the output
    head another (one a chunk of 256 rows in fine-tuning, train/models/trainable.py), and
    they are summed into the tied weight's gradient; each a fresh allocation, whose pages
    cost a fault each when it is over glibc's mmap threshold."""
    table = model.vocab * model.shape.dim * 4
    head_buffers = 1 if method.name == "pretrain" else max(1, -(-batch.head_rows // 256))
    buffers = 1 + head_buffers
    seconds = buffers * 2 * table / machine.bandwidth  # written (zeroed), then the result
    seconds += (buffers - 1) * 3 * table / machine.bandwidth  # summed: two read, one written
    if table > MMAP_THRESHOLD_MAX:
        seconds += buffers * table / PAGE_BYTES * machine.fresh_page_seconds
    return seconds


def _token_layer_residual(machine: Machine) -> float:
    """probe.py's measured cost of a token a layer of its tiny Llama (64 wide, feed-forward
    192, 128 positions) less what this module already charges it (matmuls, attention,
    element-wise work): the rest, charged to every token and layer."""
    flops = 3 * 2 * (64 * 64 * 4 + 64 * 192 * 3)
    modelled = flops / machine.matmul_rate(ROWS, 64, 64)
    modelled += 3 * 2 * 2 * 128 * 64 / 2 / _attention_rate(machine, 128, 16)
    modelled += (ELEMENTS_PER_D * 64 + ELEMENTS_PER_F * 192) * machine.element_seconds
    return max(0.0, machine.probe.get("token_layer_full", 0.0) - modelled)
