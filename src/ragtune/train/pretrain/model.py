"""The model a pretraining run trains, and how: a Llama, AdamW, nanoGPT's schedule.

A plain ``LlamaForCausalLM`` (tied embeddings, SDPA attention), so finetune, merge, the
GGUF exporter and llama.cpp take it as they take SmolLM2.
"""

from __future__ import annotations

import math
from typing import Any

from ragtune.train.pretrain.config import PretrainConfig
from ragtune.train.pretrain.sizes import ModelShape


def new_model(shape: ModelShape, vocab: int, eot: int, dropout: float = 0.0) -> Any:
    """A freshly initialised Llama of this shape; end-of-text is also BOS and padding."""
    from transformers import LlamaConfig, LlamaForCausalLM

    settings = LlamaConfig(
        vocab_size=vocab,
        hidden_size=shape.dim,
        intermediate_size=shape.ffn_dim,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv,
        max_position_embeddings=shape.context,
        attention_dropout=dropout,
        tie_word_embeddings=True,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        rms_norm_eps=1e-5,
    )
    settings._attn_implementation = "sdpa"  # fused attention on every device
    return LlamaForCausalLM(settings)


def use_compile(config: PretrainConfig, device: Any, sharded: bool = False) -> bool:
    """auto: on CUDA, unless sharded (FSDP wraps the model's layers; compiling the
    wrapper first is a combination ragtune has not run)."""
    if config.compile == "auto":
        return bool(device.type == "cuda") and not sharded
    return config.compile == "on"


def make_optimizer(model: Any, config: PretrainConfig) -> Any:
    """AdamW, weight decay on matrices only (not norms), fused where torch has it."""
    import torch

    matrices = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    others = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": matrices, "weight_decay": config.weight_decay},
        {"params": others, "weight_decay": 0.0},
    ]
    betas = (config.beta1, config.beta2)
    try:
        return torch.optim.AdamW(groups, lr=config.lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel for this device or dtype
        return torch.optim.AdamW(groups, lr=config.lr, betas=betas)


def make_scheduler(config: PretrainConfig, optimizer: Any, total_steps: int) -> Any:
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, LearningRate(config, total_steps))


class LearningRate:
    """nanoGPT's schedule as a factor of the peak: linear warmup, cosine decay to min_lr."""

    def __init__(self, config: PretrainConfig, total_steps: int) -> None:
        self.peak = config.lr
        self.floor = config.min_lr
        self.warmup = config.warmup_steps
        self.decay = config.decay_steps or total_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if step >= self.decay:
            return self.floor / self.peak
        ratio = (step - self.warmup) / max(1, self.decay - self.warmup)
        rate = self.floor + 0.5 * (1 + math.cos(math.pi * ratio)) * (self.peak - self.floor)
        return rate / self.peak
