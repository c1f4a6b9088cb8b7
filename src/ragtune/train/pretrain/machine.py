"""What this machine can do, measured rather than quoted: matmul peak and free memory.

MFU (model FLOPs utilisation) is the training FLOPs a run achieves over what the device
can do. A datasheet's peak is rarely reached and says nothing about a shared 2-vCPU
machine, so the peak is measured: the best of a few large matmuls in the dtype and on
the threads training uses.
"""

from __future__ import annotations

import os
import time
from typing import Any


def matmul_peak_flops(device: Any, dtype: Any, seconds: float = 0.5) -> float:
    """FLOP/s of the best square matmul timed for about ``seconds`` on ``device``."""
    import torch

    size = 4096 if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    for _ in range(2):  # warm up kernels and caches
        torch.matmul(a, b)
    while time.perf_counter() < deadline:
        _synchronize(device)
        began = time.perf_counter()
        torch.matmul(a, b)
        _synchronize(device)
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best


def available_memory_bytes(device: Any) -> int:
    """What a new allocation can still take: free GPU memory, or MemAvailable on Linux."""
    if device.type == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _synchronize(device: Any) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
