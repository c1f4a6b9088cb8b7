"""Tiny random Llama models for the training, merge and export tests.

Built from a config (two layers, 64 wide) with random weights so a test runs in seconds.
The tokenizer, with its chat template, is the bundled SmolLM2's, read from the GGUF file
by transformers' GGUF loader (which needs the ``gguf`` package); it is read once per
test session and copied into each model directory.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from ragtune.assets import DEFAULT_LLM


@cache
def smollm2_tokenizer() -> Any:
    from transformers import AutoTokenizer

    gguf = DEFAULT_LLM.require()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def make_tiny_llama(where: Path, seed: int = 0, **config_overrides: Any) -> Path:
    """Save a random two-layer Llama with SmolLM2's tokenizer to ``where`` and return it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = smollm2_tokenizer()
    settings: dict[str, Any] = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 2048,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "tie_word_embeddings": True,
        # at 0.02 the logits are flat and greedy decoding says "\n" only
        "initializer_range": 0.2,
    }
    settings.update(config_overrides)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**settings))
    where.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(where)
    tokenizer.save_pretrained(where)
    return where
