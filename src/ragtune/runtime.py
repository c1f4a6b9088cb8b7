"""Process-wide runtime settings: thread counts above all.

On small machines oversubscribed threads are catastrophic (PyTorch small
matmuls ran 10-18x slower with 2 OpenMP threads than with 1 on a 2-vCPU
machine, and llama.cpp collapsed when any other thread was busy), so thread
counts are set deliberately, from RAGTUNE_*_THREADS or measured defaults.
"""

from __future__ import annotations

import os
from pathlib import Path

from ragtune.errors import RagtuneError

_configured = False


def env_count(name: str, default: int) -> int:
    """A positive whole number from the environment variable ``name``, else ``default``;
    anything else set there is an error naming the variable, not a traceback."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise RagtuneError(f"{name} must be a whole number of at least 1, not {value!r}")
    return int(value)


def torch_threads() -> int:
    return env_count("RAGTUNE_TORCH_THREADS", 1)


def training_threads(processes: int = 1) -> int:
    """Threads per training process: the CPUs shared out, unless RAGTUNE_TORCH_THREADS says.

    Training multiplies large matrices (batch x sequence rows), where more threads pay:
    LoRA on SmolLM2 ran 1.5x faster with 2 threads than 1 on a quiet 2-vCPU machine
    (bench/finetune_lora.py), unlike the small matmuls of embedding one text at a time.
    """
    if os.environ.get("RAGTUNE_TORCH_THREADS", "").strip():
        return torch_threads()
    return max(1, len(os.sched_getaffinity(0)) // max(1, processes))


def llm_threads() -> int:
    # Measured on a 2-vCPU machine with SmolLM2-135M: 2 threads gave 317 prompt
    # tokens/s and 87 generated tokens/s against 159 and 52 with 1, as long as
    # nothing else is busy (embedding runs before generation, not beside it).
    return env_count("RAGTUNE_LLM_THREADS", min(8, os.cpu_count() or 1))


def configure_torch_threads() -> None:
    global _configured
    if _configured:
        return
    import torch

    torch.set_num_threads(torch_threads())
    _configured = True


def cache_dir(kind: str) -> Path:
    """Where ragtune keeps what it builds once (ONNX exports, converted models):
    ``$RAGTUNE_CACHE_DIR/KIND``, else ``$XDG_CACHE_HOME/ragtune/KIND``, else ~/.cache."""
    base = os.environ.get("RAGTUNE_CACHE_DIR")
    if base:
        return Path(base).expanduser() / kind
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ragtune" / kind
