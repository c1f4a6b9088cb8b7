"""Text from a base model (no chat template): nanoGPT's sampling loop.

The context is cropped to the model's last ``max_position_embeddings`` tokens at each
step, so a sample may run longer than the context it was trained on (a character model
with a 64-token context writes a 500-character sample), as nanoGPT's ``sample.py`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ragtune.errors import TrainingError, first_line


@torch.no_grad()
def sample_text(
    model: Any,
    tokenizer: Any,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 0.8,
    top_k: int = 200,
    seed: int = 1337,
) -> str:
    """The prompt's continuation (without the prompt); stops at the end-of-text token.

    ``temperature`` 0 is greedy decoding; ``top_k`` 0 samples from the whole vocabulary.
    """
    device = next(model.parameters()).device
    context = int(model.config.max_position_embeddings)
    eos = tokenizer.eos_token_id
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    if not ids:  # nothing to condition on: start as a document starts, after end-of-text
        ids = [eos if eos is not None else 0]
    tokens = torch.tensor([ids], dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    new: list[int] = []
    try:
        for _ in range(max_new_tokens):
            logits = model(input_ids=tokens[:, -context:], use_cache=False).logits[0, -1].float()
            if temperature == 0:
                token = int(logits.argmax())
            else:
                logits = logits / temperature
                if 0 < top_k < logits.shape[-1]:
                    kth = torch.topk(logits, top_k).values[-1]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probabilities = torch.softmax(logits, dim=-1)
                token = int(torch.multinomial(probabilities, 1, generator=generator))
            if token == eos:
                break
            new.append(token)
            tokens = torch.cat([tokens, tokens.new_tensor([[token]])], dim=1)
    finally:
        model.train(was_training)
    return str(tokenizer.decode(new, skip_special_tokens=False))


def load_for_sampling(model_dir: Path) -> tuple[Any, Any]:
    """A model directory's model and tokenizer: safetensors weights only, no model code."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    from ragtune.runtime import configure_torch_threads
    from ragtune.train.models.base_model import check_model_dir

    check_model_dir(model_dir)
    configure_torch_threads()
    transformers_logging.disable_progress_bar()  # a bar for loading a few MB is noise
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, use_safetensors=True, trust_remote_code=False
        )
    except (OSError, ValueError) as error:
        raise TrainingError(f"cannot load the model {model_dir}: {first_line(error)}") from None
    return model.eval(), tokenizer
