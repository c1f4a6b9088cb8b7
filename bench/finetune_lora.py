"""LoRA fine-tuning speed and memory: `ragtune finetune` against transformers' `Trainer` + PEFT.

    .venv/bin/python bench/finetune_lora.py [--records 64 --steps 16 --runs 2 --threads N]

The same model directory (the bundled SmolLM2-135M-Instruct, converted once to a plain
float32 Hugging Face directory), the first N records of ../shared/data/sft/alpaca_en_demo.json,
the same chat template, truncation to --max-length, batch size, optimizer steps, learning
rate (cosine, 5% warmup), LoRA (all linear layers, r, alpha, dropout), loss on the reply
tokens only, seed, fp32 on the CPU, no evaluation and no checkpoint during the run.

Each side runs in a fresh interpreter, one after the other, alternating:
- ragtune: `python -m ragtune finetune --config RECIPE` (what a user runs), with
  RAGTUNE_TORCH_THREADS=--threads (default: the CPUs, ragtune's own default for training)
  and OMP_NUM_THREADS the same; figures from summary.json;
- baseline: bench/baselines/trainer_peft_lora.py with OMP_NUM_THREADS=--threads and
  torch.set_num_threads(--threads); optionally (--default-thread-runs) once more with
  torch's default thread count, what a user running Trainer gets, as a secondary line.

tokens/s = non-padding input tokens of the batches trained / seconds of the training steps
(model loading, tokenizing and saving excluded on both sides). Peak RSS is the child
process's own high-water mark (`os.wait4`), loading and saving included on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ragtune.train.models.base_model import resolve_base_model

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sft" / "alpaca_en_demo.json"
BASELINE = ROOT / "bench" / "baselines" / "trainer_peft_lora.py"
TARGET_SPEED = 1.5  # ragtune tokens/s over the baseline's, at least
TARGET_MEMORY = 1.0  # ragtune peak RSS over the baseline's, at most


def run_child(command: list[str], env: dict[str, str], log: Path) -> float:
    """Run a command to completion; its own peak RSS in MB (ru_maxrss of this child only)."""
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{command[:4]} failed ({process.returncode}):\n{tail}")
    return usage.ru_maxrss / 1024  # Linux: kilobytes


def thread_env(threads: int | None) -> dict[str, str]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    env.pop("OMP_NUM_THREADS", None)
    env.pop("RAGTUNE_TORCH_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
        env["RAGTUNE_TORCH_THREADS"] = str(threads)
    return env


def recipe(args: argparse.Namespace) -> str:
    settings = {
        "method": "lora",
        "max_length": args.max_length,
        "overlong": "truncate",
        "batch_size": args.batch_size,
        "grad_accum": 1,
        "max_steps": args.steps,
        "learning_rate": args.lr,
        "schedule": "cosine",
        "warmup_ratio": 0.05,
        "lora_r": args.lora_r,
        "lora_alpha": args.lora_alpha,
        "lora_dropout": args.lora_dropout,
        "lora_targets": "all-linear",
        "precision": "fp32",
        "eval_fraction": 0.0,
        "save_every": args.steps + 1,  # no checkpoint during the run (Trainer: save_strategy no)
        "seed": args.seed,
    }
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())


def run_ragtune(
    args: argparse.Namespace, model: Path, data: Path, scratch: Path, n: int
) -> dict[str, Any]:
    config = scratch / "recipe.yaml"
    config.write_text(recipe(args), encoding="utf-8")
    output = scratch / f"ragtune-{n}"
    command = [
        sys.executable,
        "-m",
        "ragtune",
        "finetune",
        "--config",
        str(config),
        "--data",
        str(data),
        "--base",
        str(model),
        "--output",
        str(output),
        "--overwrite",
    ]
    rss = run_child(command, thread_env(args.threads), scratch / f"ragtune-{n}.log")
    summary = json.loads((output / "summary.json").read_text())
    metrics = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    losses = [record["loss"] for record in metrics if "loss" in record]
    return {
        "tokens": summary["tokens"],
        "seconds": summary["train_seconds"],
        "tokens_per_second": summary["tokens"] / summary["train_seconds"],
        "steps": summary["steps"],
        "final_loss": summary["final_loss"],
        "mean_loss": sum(losses) / len(losses),
        "peak_rss_mb": rss,
        "examples": summary["train_examples"],
    }


def run_baseline(
    args: argparse.Namespace, model: Path, data: Path, scratch: Path, n: int, threads: int | None
) -> dict[str, Any]:
    result = scratch / f"baseline-{n}-{threads}.json"
    command = [
        sys.executable,
        str(BASELINE),
        "--model",
        str(model),
        "--data",
        str(data),
        "--result",
        str(result),
        "--max-length",
        str(args.max_length),
        "--batch-size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
        "--lr",
        str(args.lr),
        "--lora-r",
        str(args.lora_r),
        "--lora-alpha",
        str(args.lora_alpha),
        "--lora-dropout",
        str(args.lora_dropout),
        "--seed",
        str(args.seed),
        "--threads",
        str(threads or 0),
        "--output-dir",
        str(scratch / f"trainer-{n}"),
    ]
    rss = run_child(command, thread_env(threads), scratch / f"baseline-{n}-{threads}.log")
    figures = json.loads(result.read_text())
    figures["peak_rss_mb"] = rss
    return figures


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(run[key]) for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--records", type=int, default=64, help="The first N records.")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", type=int, default=2, help="Alternating runs of each side.")
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="torch threads on both sides (RAGTUNE_TORCH_THREADS, OMP_NUM_THREADS, set_num_threads).",
    )
    parser.add_argument(
        "--default-thread-runs",
        type=int,
        default=0,
        help="Runs of the baseline with torch's default thread count (0: none).",
    )
    args = parser.parse_args()

    model = resolve_base_model(None)
    records = json.loads(args.data.read_text(encoding="utf-8"))[: args.records]
    print(f"model {model}")
    print(
        f"data: first {len(records)} records of {args.data.name}; max_length {args.max_length} "
        f"(truncate), batch {args.batch_size}, {args.steps} optimizer steps, no grad accumulation, "
        f"AdamW lr {args.lr} cosine with 5% warmup, max grad norm 1.0, weight decay 0"
    )
    print(
        f"LoRA all-linear r={args.lora_r} alpha={args.lora_alpha} dropout={args.lora_dropout}; "
        f"fp32 on CPU; loss on reply tokens only; seed {args.seed}; no eval, no checkpoints"
    )
    print(
        "baseline: transformers Trainer + PEFT get_peft_model, DataCollatorForSeq2Seq "
        "(dynamic padding), default random sampler, default optim, dataloader_num_workers=0"
    )
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp:
        scratch = Path(tmp)
        data = scratch / "records.json"
        data.write_text(json.dumps(records), encoding="utf-8")
        ours: list[dict[str, Any]] = []
        theirs: list[dict[str, Any]] = []
        default_threads: list[dict[str, Any]] = []
        for n in range(args.runs):
            ours.append(run_ragtune(args, model, data, scratch, n))
            print(f"run {n + 1} ragtune {args.threads} thread(s)  {fmt(ours[-1])}", flush=True)
            theirs.append(run_baseline(args, model, data, scratch, n, args.threads))
            print(f"run {n + 1} baseline {args.threads} thread(s) {fmt(theirs[-1])}", flush=True)
        for n in range(args.default_thread_runs):
            default_threads.append(run_baseline(args, model, data, scratch, n, None))
            threads = default_threads[-1]["threads"]
            print(f"run {n + 1} baseline {threads} threads {fmt(default_threads[-1])}", flush=True)

    print()
    print(
        "| side (median of runs) | tokens/s | tokens | steps | train s | peak RSS MB | final loss | mean loss |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    same = f"{args.threads} thread{'s' if args.threads > 1 else ''}"
    rows = [
        (f"ragtune ({len(ours)} runs, {same})", ours),
        (f"Trainer + PEFT ({len(theirs)} runs, {same})", theirs),
    ]
    if default_threads:
        threads = default_threads[0]["threads"]
        rows.append(
            (
                f"Trainer + PEFT ({len(default_threads)} run(s), {threads} threads, torch default)",
                default_threads,
            )
        )
    for name, runs in rows:
        print(
            f"| {name} | {median(runs, 'tokens_per_second'):.1f} | {median(runs, 'tokens'):.0f} "
            f"| {median(runs, 'steps'):.0f} | {median(runs, 'seconds'):.1f} "
            f"| {median(runs, 'peak_rss_mb'):.0f} | {median(runs, 'final_loss'):.3f} "
            f"| {median(runs, 'mean_loss'):.3f} |"
        )
    speed = median(ours, "tokens_per_second") / median(theirs, "tokens_per_second")
    memory = median(ours, "peak_rss_mb") / median(theirs, "peak_rss_mb")
    print()
    print(
        f"ragtune / Trainer ({same} each): tokens/s {speed:.2f}x "
        f"(target >= {TARGET_SPEED}x: {'met' if speed >= TARGET_SPEED else 'NOT met'}), "
        f"peak RSS {memory:.2f}x (target <= {TARGET_MEMORY}x: "
        f"{'met' if memory <= TARGET_MEMORY else 'NOT met'})"
    )
    if default_threads:
        speed_default = median(ours, "tokens_per_second") / median(
            default_threads, "tokens_per_second"
        )
        memory_default = median(ours, "peak_rss_mb") / median(default_threads, "peak_rss_mb")
        print(
            f"ragtune / Trainer ({default_threads[0]['threads']} threads, torch default): "
            f"tokens/s {speed_default:.2f}x, peak RSS {memory_default:.2f}x"
        )


def fmt(run: dict[str, Any]) -> str:
    return (
        f"{run['tokens_per_second']:7.1f} tok/s  {run['tokens']} tokens in {run['seconds']:.1f} s, "
        f"{run['steps']} steps, peak RSS {run['peak_rss_mb']:.0f} MB, "
        f"loss final {run['final_loss']:.3f} mean {run['mean_loss']:.3f}"
    )


if __name__ == "__main__":
    main()
