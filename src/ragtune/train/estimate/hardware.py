"""The hardware an estimate prices a run on: a named GPU profile, or this machine measured.

A GPU profile is a datasheet: peak dense bf16 tensor FLOP/s (never the 2x "with sparsity"
figure), memory, memory bandwidth, and a typical on-demand price per GPU-hour, all
overridable. A run's time on it is its FLOPs over ``peak x MFU x GPUs``; the MFU is
assumed (0.4, a well-tuned transformer's), since it cannot be measured without the GPU.

``this`` is measured instead (``measure_this``, about ten seconds, cached as JSON keyed by
CPU model, thread count and torch version): the matmul throughput at several matrix
widths (a small model on a CPU runs far below the best square matmul, so no single MFU
fits), the memory bandwidth, the cost of one small tensor operation, and a child
interpreter that imports torch and transformers (its peak RSS is the baseline every
training process starts from, its wall time the start-up every run pays).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragtune.errors import EstimateError
from ragtune.runtime import cache_dir

DEFAULT_MFU = 0.4
# Widths of the matmuls timed: rows x width times width x width, rows as a training batch
# (ROWS) and as a small fine-tuning micro-batch (FEW_ROWS): how the rate falls with fewer
# rows is measured, never assumed (on an AVX2 EPYC it barely falls down to 64 rows).
WIDTHS = (32, 64, 128, 256, 512, 1024, 2048)
ROWS = 768
FEW_ROWS = 64
CACHE_FORMAT = 5


@dataclass(frozen=True)
class GpuProfile:
    name: str
    label: str
    peak_flops: float  # dense bf16 tensor FLOP/s, per GPU
    memory_bytes: int  # per GPU
    bandwidth: float  # bytes/s, per GPU
    price_per_hour: float  # US$ per GPU-hour, a typical on-demand price
    source: str


_G = 1e9
_T = 1e12
# Datasheet figures (dense, not the sparsity ones); prices are typical on-demand cloud
# prices per GPU-hour in 2024-2025, to be overridden with --price-per-hour.
GPU_PROFILES: dict[str, GpuProfile] = {
    profile.name: profile
    for profile in (
        GpuProfile(
            "t4",
            "NVIDIA T4 16 GB",
            65 * _T,
            16 * 2**30,
            320 * _G,
            0.35,
            "T4 datasheet: 65 TFLOPS fp16 tensor (no bf16), 16 GB GDDR6, 320 GB/s",
        ),
        GpuProfile(
            "a10g",
            "NVIDIA A10G 24 GB",
            70 * _T,
            24 * 2**30,
            600 * _G,
            1.01,
            "AWS G5 (no NVIDIA datasheet): ~70 TFLOPS bf16 dense, 24 GB, 600 GB/s",
        ),
        GpuProfile(
            "l4",
            "NVIDIA L4 24 GB",
            121 * _T,
            24 * 2**30,
            300 * _G,
            0.80,
            "L4 datasheet: 242 TFLOPS bf16 with sparsity = 121 dense, 24 GB, 300 GB/s",
        ),
        GpuProfile(
            "rtx4090",
            "NVIDIA RTX 4090 24 GB",
            165 * _T,
            24 * 2**30,
            1008 * _G,
            0.40,
            "Ada whitepaper: 165 TFLOPS bf16 dense (fp32 accumulate), 24 GB, 1008 GB/s",
        ),
        GpuProfile(
            "l40s",
            "NVIDIA L40S 48 GB",
            362 * _T,
            48 * 2**30,
            864 * _G,
            1.00,
            "L40S datasheet: 733 TFLOPS bf16 with sparsity = 362 dense, 48 GB, 864 GB/s",
        ),
        GpuProfile(
            "a100-40g",
            "NVIDIA A100 SXM 40 GB",
            312 * _T,
            40 * 2**30,
            1555 * _G,
            1.30,
            "A100 datasheet: 312 TFLOPS bf16 dense, 40 GB HBM2, 1555 GB/s",
        ),
        GpuProfile(
            "a100-80g",
            "NVIDIA A100 SXM 80 GB",
            312 * _T,
            80 * 2**30,
            2039 * _G,
            1.80,
            "A100 datasheet: 312 TFLOPS bf16 dense, 80 GB HBM2e, 2039 GB/s",
        ),
        GpuProfile(
            "h100",
            "NVIDIA H100 SXM 80 GB",
            989 * _T,
            80 * 2**30,
            3350 * _G,
            3.00,
            "H100 datasheet: 1979 TFLOPS bf16 with sparsity = 989 dense, 80 GB, 3.35 TB/s",
        ),
        GpuProfile(
            "h200",
            "NVIDIA H200 SXM 141 GB",
            989 * _T,
            141 * 2**30,
            4800 * _G,
            3.80,
            "H200 datasheet: 1979 TFLOPS bf16 with sparsity = 989 dense, 141 GB, 4.8 TB/s",
        ),
    )
}


@dataclass(frozen=True)
class Machine:
    """What was measured on this machine, for one thread count."""

    cpu: str
    threads: int
    torch: str
    matmul: dict[int, float]  # width -> FLOP/s of a ROWS x width x width matmul
    bandwidth: float  # bytes/s of a large tensor copy
    element_seconds: float  # one element of an element-wise op, forward and backward
    baseline_rss: float  # bytes: an interpreter with torch and transformers imported
    startup_seconds: float  # importing them
    memory_bytes: int  # physical memory
    probe: dict[str, float]  # a tiny Llama's step costs (probe.py): fixed, per layer
    measured_at: str = ""
    matmul_few: dict[int, float] = field(default_factory=dict)  # the same at FEW_ROWS rows
    dropout_seconds: float = 0.0  # one element through dropout, forward and backward
    pretrain_rss: float = 0.0  # bytes: what pretraining has imported once it built a model
    logit_seconds: float = 0.0  # one logit through cross-entropy, forward and backward
    lora_rate: float = 0.0  # FLOP/s of LoRA's rank-16 matmuls (rows x d @ d x 16 and back)
    attention_rate: float = 0.0  # FLOP/s of causal attention (SDPA), forward and backward
    fresh_page_seconds: float = 0.0  # first touch of a page the kernel hands out (4 KiB)

    def matmul_rate(self, rows: float, inner: float, outer: float) -> float:
        """FLOP/s of a (rows x inner) @ (inner x outer) matmul: interpolated in log space
        from the widths measured, at the geometric mean of inner and outer, and between
        the two row counts measured (ROWS, FEW_ROWS); under FEW_ROWS, in proportion to
        the rows, as a kernel's register block then holds fewer rows than it computes."""
        import math

        width = math.sqrt(max(1.0, inner) * max(1.0, outer))
        rate = _interpolated(self.matmul, width)
        if rows >= ROWS or not self.matmul_few:
            return rate
        few = _interpolated(self.matmul_few, width)
        if rows <= FEW_ROWS:
            return few * max(1.0, rows) / FEW_ROWS
        share = math.log(rows / FEW_ROWS) / math.log(ROWS / FEW_ROWS)
        return math.exp(math.log(few) + share * (math.log(rate) - math.log(few)))

    @property
    def peak_flops(self) -> float:
        return max(self.matmul.values())


def _interpolated(rates: dict[int, float], width: float) -> float:
    """The rate at ``width``, log-linear between the widths measured; in proportion to
    the width below the narrowest (too little work a row to fill the vector units)."""
    import math

    points = sorted(rates.items())
    if width <= points[0][0]:
        return points[0][1] * width / points[0][0]
    for (w0, r0), (w1, r1) in zip(points, points[1:], strict=False):
        if w0 <= width <= w1:
            share = math.log(width / w0) / math.log(w1 / w0)
            return math.exp(math.log(r0) + share * (math.log(r1) - math.log(r0)))
    return points[-1][1]


@dataclass(frozen=True)
class Hardware:
    """Where a run is priced: ``machine`` for this one, ``gpu`` for a profile."""

    name: str
    devices: int
    mfu: float | None  # assumed (a GPU) or None (this machine: modelled per matmul)
    price_per_hour: float | None  # for all devices together
    gpu: GpuProfile | None = None
    machine: Machine | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def memory_bytes(self) -> int:
        if self.gpu is not None:
            return self.gpu.memory_bytes
        assert self.machine is not None
        return self.machine.memory_bytes

    @property
    def peak_flops(self) -> float:
        """Per device."""
        if self.gpu is not None:
            return self.gpu.peak_flops
        assert self.machine is not None
        return self.machine.peak_flops

    @property
    def label(self) -> str:
        if self.gpu is not None:
            return f"{self.devices} x {self.gpu.label}" if self.devices > 1 else self.gpu.label
        assert self.machine is not None
        threads = self.machine.threads
        return f"this machine ({self.machine.cpu}, {threads} thread{'s' * (threads > 1)})"


def hardware(
    device: str,
    gpus: int = 1,
    mfu: float | None = None,
    price_per_hour: float | None = None,
    threads: int | None = None,
    measure: bool = True,
) -> Hardware:
    """The hardware named by ``--device``: ``this`` (measured, cached) or a GPU profile."""
    _check_positive_int("--gpus", gpus)
    if mfu is not None and not 0 < mfu <= 1:
        raise EstimateError(f"--mfu must be in (0, 1], not {mfu}")
    if price_per_hour is not None and not price_per_hour >= 0:
        raise EstimateError(f"--price-per-hour must be 0 or more, not {price_per_hour}")
    name = device.strip().lower()
    if name == "this":
        if gpus != 1:
            raise EstimateError("--gpus applies to a GPU profile, not --device this")
        from ragtune.runtime import training_threads

        count = threads or training_threads()
        _check_positive_int("--threads", count)
        machine = measure_this(count) if measure else None
        return Hardware("this", 1, mfu, price_per_hour, machine=machine)
    profile = GPU_PROFILES.get(name)
    if profile is None:
        raise EstimateError(
            f"unknown device {device!r}; give this or a profile: {', '.join(GPU_PROFILES)}"
        )
    price = profile.price_per_hour * gpus if price_per_hour is None else price_per_hour
    return Hardware(name, gpus, mfu or DEFAULT_MFU, price, gpu=profile)


def _check_positive_int(name: str, value: int) -> None:
    if value <= 0:
        raise EstimateError(f"{name} must be positive, not {value}")


# ----------------------------------------------------------------------------- measuring


def measure_this(threads: int, refresh: bool = False) -> Machine:
    """This machine measured with ``threads`` torch threads; cached after the first time."""
    import torch

    key = _cache_key(threads, torch.__version__)
    path = cache_dir("estimate") / f"machine-{key}.json"
    if not refresh:
        cached = _read_cached(path)
        if cached is not None:
            return cached
    machine = _measure(threads)
    try:
        from ragtune.atomic import write_json_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"format": CACHE_FORMAT, **_as_json(machine)})
    except OSError:  # a read-only cache costs a re-measurement next time, nothing else
        pass
    return machine


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _cache_key(threads: int, torch_version: str) -> str:
    text = f"{cpu_model()}|{threads}|{torch_version}|{os.cpu_count()}|{CACHE_FORMAT}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_cached(path: Path) -> Machine | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.pop("format", None) != CACHE_FORMAT:
            return None
        for key in ("matmul", "matmul_few"):
            data[key] = {int(width): float(rate) for width, rate in data[key].items()}
        return Machine(**data)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _as_json(machine: Machine) -> dict[str, Any]:
    data = asdict(machine)
    for key in ("matmul", "matmul_few"):
        data[key] = {str(width): rate for width, rate in data[key].items()}
    return data


def _measure(threads: int) -> Machine:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        matmul = {width: _matmul_rate(width) for width in WIDTHS}
        matmul_few = {width: _matmul_rate(width, rows=FEW_ROWS, seconds=0.2) for width in WIDTHS}
        bandwidth = _bandwidth()
        element_seconds = _element_seconds()
        dropout_seconds = _dropout_seconds()
        logit_seconds = _logit_seconds()
        lora_rate = _lora_rate()
        attention_rate = _attention_rate()
        fresh_page_seconds = _fresh_page_seconds()
    finally:
        torch.set_num_threads(before)
    probe = _probe(threads)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return Machine(
        cpu=cpu_model(),
        threads=threads,
        torch=torch.__version__,
        matmul=matmul,
        bandwidth=bandwidth,
        element_seconds=element_seconds,
        baseline_rss=probe.pop("baseline_rss"),
        startup_seconds=probe.pop("startup_seconds"),
        pretrain_rss=probe.pop("pretrain_rss"),
        memory_bytes=int(memory),
        probe=probe,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
        matmul_few=matmul_few,
        dropout_seconds=dropout_seconds,
        logit_seconds=logit_seconds,
        lora_rate=lora_rate,
        attention_rate=attention_rate,
        fresh_page_seconds=fresh_page_seconds,
    )


def _best_seconds(run: Any, seconds: float, least: int = 3) -> float:
    run()  # warm up kernels and caches
    best = float("inf")
    deadline = time.perf_counter() + seconds
    done = 0
    while done < least or time.perf_counter() < deadline:
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
        done += 1
    return best


def _matmul_rate(width: int, rows: int = ROWS, seconds: float = 0.35) -> float:
    """FLOP/s of (rows x width) @ (width x width), fp32, the best of repeated runs."""
    import torch

    a = torch.randn(rows, width)
    b = torch.randn(width, width)
    repeat = max(1, 2**22 // (rows * width))  # enough work per timing to see it

    def run() -> None:
        for _ in range(repeat):
            torch.matmul(a, b)

    return 2 * rows * width * width * repeat / _best_seconds(run, seconds)


def _bandwidth(seconds: float = 0.5) -> float:
    """Bytes/s of copying 64 MB (read and written), the best of repeated copies."""
    import torch

    source = torch.empty(2**24)
    target = torch.empty(2**24)
    source.fill_(1.0)
    return 2 * source.numel() * 4 / _best_seconds(lambda: target.copy_(source), seconds)


def _element_seconds() -> float:
    """Seconds an element of ``silu(x) * x`` takes, forward and backward, on a 768 x 512
    tensor: element-wise work at the size of a small model's activations."""
    import torch

    x = torch.randn(ROWS, 512, requires_grad=True)

    def run() -> None:
        y = torch.nn.functional.silu(x) * x
        y.backward(torch.ones_like(y))
        x.grad = None

    # 2 ops forward, about 4 backward: an element-wise op on each element 6 times
    return _best_seconds(run, 0.3) / (6 * x.numel())


def _dropout_seconds() -> float:
    """Seconds an element of dropout takes, forward (a random mask drawn, applied and
    scaled) and backward (the mask applied to the gradient), on a 768 x 512 tensor: LoRA
    drops out the input of every adapted layer, and drawing random numbers costs several
    times a plain element-wise op."""
    import torch

    x = torch.randn(ROWS, 512, requires_grad=True)

    def run() -> None:
        y = torch.nn.functional.dropout(x, 0.05, training=True)
        y.backward(torch.ones_like(y))
        x.grad = None

    return _best_seconds(run, 0.3) / x.numel()


def _logit_seconds() -> float:
    """Seconds a logit takes through cross-entropy, forward and backward, over a 128 x
    32,768 block (larger than a cache, as a real vocabulary's logits are): log-softmax's
    exponentials and logarithms cost several times a plain element-wise op, and a large
    vocabulary makes them a real part of a step."""
    import torch

    logits = torch.randn(128, 32768, requires_grad=True)
    targets = torch.randint(0, 32768, (128,))

    def run() -> None:
        torch.nn.functional.cross_entropy(logits, targets).backward()
        logits.grad = None

    return _best_seconds(run, 0.3) / logits.numel()


LORA_RANK = 16  # ragtune finetune's default lora_r


def _lora_rate() -> float:
    """FLOP/s of LoRA's adapter matmuls, forward and backward: (256 x 576) @ (576 x r) @
    (r x 576), far narrower than the square matmuls timed, and slower a FLOP."""
    import torch

    x = torch.randn(256, 576, requires_grad=True)
    a = torch.randn(576, LORA_RANK, requires_grad=True)
    b = torch.randn(LORA_RANK, 576, requires_grad=True)

    def run() -> None:
        out = (x @ a) @ b
        out.backward(torch.ones_like(out))
        x.grad = a.grad = b.grad = None

    return 3 * 2 * 2 * 256 * 576 * LORA_RANK / _best_seconds(run, 0.2)


def _attention_rate() -> float:
    """FLOP/s of causal scaled-dot-product attention (the kernel transformers calls), 2
    sequences x 8 heads x 128 positions x 64 wide, forward and backward, counted as the
    modelled FLOPs: two T x hd x T matmuls a head forward, twice that backward, half of
    each computed under the causal mask."""
    import torch

    q, k, v = (torch.randn(2, 8, 128, 64, requires_grad=True) for _ in range(3))

    def run() -> None:
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        out.backward(torch.ones_like(out))
        q.grad = k.grad = v.grad = None

    flops = 3 * 2 * 2 * 2 * 8 * 128 * 128 * 64 / 2
    return flops / _best_seconds(run, 0.3)


def _fresh_page_seconds() -> float:
    """Seconds a 4 KiB page costs the first time it is written, in an allocation glibc
    maps afresh from the kernel (over its 32 MiB largest mmap threshold): a tensor that
    large is new memory each time it is allocated, a page fault a page."""
    import torch

    elements = 2**24  # 64 MiB
    best = _best_seconds(lambda: torch.zeros(elements), 0.2)
    touched = elements * 4 / 2**30 * 2**30 / 4096
    return max(0.0, best / touched)


def _probe(threads: int) -> dict[str, float]:
    """What probe.py measures in a fresh interpreter (see its docstring)."""
    code = "from ragtune.train.estimate.probe import main; main()"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "RAGTUNE_TORCH_THREADS": str(threads)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        raise EstimateError(
            "cannot measure this machine: the probe of torch and transformers failed"
        ) from None
    return {key: float(value) for key, value in result.items()}
