"""Loading the model to train (full, LoRA or 4-bit QLoRA) and computing its loss cheaply.

The loss runs the output head only on positions that carry a label. With a 49k-token
vocabulary the head's logits for a batch of 4 x 512 tokens are 400 MB in fp32; most of
them belong to prompt tokens whose loss is masked anyway. Skipping them is most of why
ragtune trains faster and in less memory than ``Trainer`` (see bench/finetune_lora.py).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ragtune.errors import TrainingError, first_line
from ragtune.train.config import ALL_LINEAR, TrainConfig
from ragtune.train.data.encode import IGNORE


def pick_dtype(config: TrainConfig) -> torch.dtype:
    """fp32 on CPU (bf16 matmuls are slow there); bf16 on CUDA where supported."""
    if config.precision == "fp32":
        return torch.float32
    if config.precision == "bf16":
        return torch.bfloat16
    if config.precision == "fp16":
        return torch.float16
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_model(model_dir: Path, config: TrainConfig, dtype: torch.dtype) -> Any:
    """The base model, wrapped for LoRA when asked; trainable parameters only where meant."""
    from transformers import AutoModelForCausalLM

    # Weights from safetensors only (a .bin is a pickle), and never a model's own code.
    kwargs: dict[str, Any] = {"dtype": dtype, "use_safetensors": True, "trust_remote_code": False}
    if config.qlora:
        kwargs.update(_qlora_kwargs(dtype))
    # Full fine-tuning keeps fp32 master weights; accelerate's autocast does bf16 math.
    if config.method == "full":
        kwargs["dtype"] = torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    except (OSError, ValueError) as error:
        raise TrainingError(
            f"cannot load the base model {model_dir}: {first_line(error)}"
        ) from None
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if config.method == "lora":
        model = add_lora(model, config)
    return model


def _qlora_kwargs(dtype: torch.dtype) -> dict[str, Any]:
    if not torch.cuda.is_available():
        raise TrainingError("qlora needs a CUDA GPU (bitsandbytes 4-bit); use method lora on CPU")
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise TrainingError("qlora needs bitsandbytes: pip install 'ragtune[qlora]'") from None
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
    )
    return {"quantization_config": quantization, "device_map": {"": torch.cuda.current_device()}}


def add_lora(model: Any, config: TrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.qlora:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing
        )
    targets = config.lora_targets
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets if targets != ALL_LINEAR else ALL_LINEAR,
        task_type="CAUSAL_LM",
    )
    try:
        with warnings.catch_warnings():  # peft on transformers 5: deprecation chatter
            warnings.simplefilter("ignore")
            peft_model = get_peft_model(model, lora)
    except ValueError as error:  # e.g. a target module the model does not have
        raise TrainingError(f"cannot add LoRA: {first_line(error)}") from None
    return peft_model


def causal_lm(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


class SelectiveLoss(nn.Module):
    """Wraps a causal LM so forward() returns per-sequence label log-likelihoods.

    Only positions with a label go through the output head. Being the module that
    ``accelerator.prepare`` wraps, it keeps data-parallel gradient sync working.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (sum of label log-probs per sequence, label count per sequence)."""
        lm = causal_lm(self.model)  # LoRA layers sit inside it, so they take part
        hidden = lm.get_decoder()(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state
        # position t predicts token t + 1
        targets = labels[:, 1:]
        selected = targets != IGNORE
        rows = torch.nonzero(selected, as_tuple=True)
        logprobs = _label_logprobs(lm.get_output_embeddings(), hidden[:, :-1][rows], targets[rows])
        per_sequence = torch.zeros(labels.shape[0], dtype=logprobs.dtype, device=logprobs.device)
        per_sequence = per_sequence.index_add(0, rows[0], logprobs)
        counts = selected.sum(dim=1)
        return per_sequence, counts


# Rows of output-head logits computed at once: 256 x 49k fp32 = 50 MB for SmolLM2.
HEAD_CHUNK = 256


def _label_logprobs(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at each row, holding one chunk of logits at a time.

    A frozen head (LoRA, QLoRA) needs no weight gradient, so the gradient with respect to
    the hidden state is computed in the forward pass, chunk by chunk, and the logits are
    dropped (the fused linear cross-entropy of Liger and Cut Cross-Entropy). A trained head
    (full fine-tuning) recomputes each chunk's logits in the backward pass instead.
    """
    weight = getattr(head, "weight", None)
    frozen = (
        isinstance(weight, torch.Tensor)
        and not weight.requires_grad
        and getattr(head, "bias", None) is None
        # DeepSpeed ZeRO-3 gathers a weight only while its module's forward runs; read
        # directly, it is an empty partition: such a head is called, not read.
        and not hasattr(weight, "ds_id")
    )
    if frozen and hidden.requires_grad:
        return FrozenHeadLogprobs.apply(hidden, weight, targets)
    starts = range(0, hidden.shape[0], HEAD_CHUNK)
    if torch.is_grad_enabled() and hidden.requires_grad:
        parts = [
            checkpoint(
                _chunk_logprobs,
                head,
                hidden[start : start + HEAD_CHUNK],
                targets[start : start + HEAD_CHUNK],
                use_reentrant=False,
            )
            for start in starts
        ]
    else:  # no backward pass (evaluation, DPO's reference): nothing to keep
        parts = [
            _chunk_logprobs(
                head, hidden[start : start + HEAD_CHUNK], targets[start : start + HEAD_CHUNK]
            )
            for start in starts
        ]
    return torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)


def _chunk_logprobs(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    return -nn.functional.cross_entropy(logits, targets, reduction="none")


class FrozenHeadLogprobs(torch.autograd.Function):
    """log softmax(hidden @ W.T)[target] with W frozen; d/d hidden = W[target] - p @ W."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        logprobs = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        gradient = torch.empty_like(hidden)
        for start in range(0, hidden.shape[0], HEAD_CHUNK):
            rows = slice(start, start + HEAD_CHUNK)
            chosen = targets[rows]
            logits = (hidden[rows] @ weight.t()).float()
            normaliser = torch.logsumexp(logits, dim=-1, keepdim=True)
            logprobs[rows] = (logits.gather(1, chosen[:, None]) - normaliser).squeeze(1)
            probabilities = logits.sub_(normaliser).exp_().to(weight.dtype)  # softmax, in place
            gradient[rows] = (weight[chosen] - probabilities @ weight).to(hidden.dtype)
        ctx.save_for_backward(gradient)
        return logprobs

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        (gradient,) = ctx.saved_tensors
        return (grad_output[:, None] * gradient).to(gradient.dtype), None, None
