"""The measurements that need a fresh interpreter, printed as one JSON line.

    python -c "from ragtune.train.estimate.probe import main; main()"

- the RSS of a process that has imported what ``ragtune pretrain`` imports and built and
  stepped a tiny model with its code (the baseline a pretraining run's memory starts
  from: building the first Llama loads much of transformers and torch lazily);
- the peak RSS and wall time of importing what every training run imports (the baseline
  a fine-tuning run's memory starts from, the start-up each run pays);
- the fixed and per-layer cost of one training step of a tiny Llama (1 and 3 layers,
  64 wide, 32 tokens): at that size the matmuls are negligible, so what is timed is what
  every step pays whatever the size, operation dispatch, autograd and the optimizer's
  loop over tensors; full training, LoRA (PEFT) and an evaluation forward pass apart;
- the same with 512 tokens: what a token costs a layer (its matmuls, modelled apart,
  are subtracted by the caller).
"""

from __future__ import annotations

import json
import time
from typing import Any

_began = time.perf_counter()


def _peak_rss() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def main() -> None:
    import accelerate  # noqa: F401
    import matplotlib
    import torch

    import ragtune.train.loop.trainer  # noqa: F401
    import ragtune.train.pretrain.corpus  # noqa: F401
    import ragtune.train.pretrain.run  # noqa: F401
    from ragtune.runtime import torch_threads

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401  (the loss plot every run draws)

    # building the first Llama imports transformers' modelling code, which every run
    # pays: start-up includes it (the tiny model's own few milliseconds are noise)
    pretrain_rss = _pretraining_process()
    import peft  # noqa: F401
    from transformers import LlamaForCausalLM  # noqa: F401

    import ragtune.train.run  # noqa: F401

    startup = time.perf_counter() - _began
    baseline = _peak_rss()
    torch.set_num_threads(torch_threads())
    full = {layers: _step_seconds(layers, lora=False) for layers in (1, 3)}
    lora = {layers: _step_seconds(layers, lora=True) for layers in (1, 3)}
    evaluate = {layers: _step_seconds(layers, lora=False, train=False) for layers in (1, 3)}
    # the same with 16x the tokens: what a token costs a layer beyond its matmuls
    many = {layers: _step_seconds(layers, lora=False, sequences=4, length=128) for layers in (1, 3)}
    result = {
        "token_layer_full": ((many[3] - many[1]) - (full[3] - full[1])) / 2 / (512 - 32),
        "startup_seconds": startup,
        "baseline_rss": baseline,
        "pretrain_rss": pretrain_rss,
        "step_fixed": full[1] - (full[3] - full[1]) / 2,
        "layer_full": (full[3] - full[1]) / 2,
        "layer_lora": (lora[3] - lora[1]) / 2,
        "lora_fixed": lora[1] - (lora[3] - lora[1]) / 2,
        "layer_eval": (evaluate[3] - evaluate[1]) / 2,
        "eval_fixed": evaluate[1] - (evaluate[3] - evaluate[1]) / 2,
    }
    print(json.dumps(result))


def _current_rss() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) * 1024
    return _peak_rss()


def _pretraining_process() -> float:
    """RSS (bytes) once ``ragtune pretrain``'s own code has built a tiny model and taken
    one training step with it; its few kilobytes of tensors are negligible."""
    import torch

    from ragtune.train.pretrain.model import new_model
    from ragtune.train.pretrain.objective import NextTokenLoss
    from ragtune.train.pretrain.sizes import ModelShape

    model = new_model(ModelShape(layers=1, heads=2, dim=64, context=32), 128, 0, 0.0)
    network = NextTokenLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    ids = torch.randint(0, 128, (2, 33))
    network(ids[:, :-1], ids[:, 1:]).backward()
    optimizer.step()
    return _current_rss()


def _tiny(layers: int) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        tie_word_embeddings=True,
    )
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config)


def _step_seconds(
    layers: int,
    lora: bool,
    train: bool = True,
    seconds: float = 0.6,
    sequences: int = 1,
    length: int = 32,
) -> float:
    """The median seconds of one step (forward, backward, AdamW) or one forward pass."""
    import statistics

    import torch

    model = _tiny(layers)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear")
        )
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    ids = torch.randint(0, 128, (sequences, length))
    mask = torch.ones_like(ids)

    def step() -> None:
        if not train:
            with torch.no_grad():
                model(input_ids=ids, attention_mask=mask)
            return
        out = model(input_ids=ids, attention_mask=mask)
        out.logits.float().logsumexp(-1).mean().backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < 5 or time.perf_counter() < deadline:
        began = time.perf_counter()
        step()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


if __name__ == "__main__":
    main()
