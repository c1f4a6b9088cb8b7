"""`ragtune estimate` against real runs: wall time within ±25%, peak RSS within ±15%.

    .venv/bin/python bench/estimate_accuracy.py [--threads 1] [--only NAME ...] [--runs 1]

Five small configurations, each run as a user runs it (`python -m ragtune ...` in a fresh
interpreter) beside `python -m ragtune estimate ... --json` with the same recipe, data and
flags:

- ingest: 40 XQuAD paragraphs as text files, into a new index (the rag route);
- lora: LoRA on the bundled SmolLM2-135M, 16 Alpaca records, batch 2, max length 128,
  4 steps, fp32;
- full: full fine-tuning of the same, 3 steps;
- pretrain-char: nanoGPT's README CPU recipe (4 x 128, context 64, batch 12), 200 steps;
- pretrain-bpe: a 5m-preset model (6 x 256, context 256) with a 2,048-token BPE trained on
  tiny Shakespeare, batch 4, 40 steps.

Wall time is the child process's, start to exit (start-up, data, model, loop, saving);
peak RSS is its own high-water mark (`os.wait4`). Children run with
RAGTUNE_TORCH_THREADS=OMP_NUM_THREADS=--threads, and the estimate is told the same thread
count. The estimate's own measurement of the machine is cached (first run ~15 s);
`--fresh-probe` measures it again right before each configuration, so that on a machine
shared with other work the estimate and the run see about the same load. The 1-minute
load average is printed beside every row, before and after the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SHAKESPEARE = SHARED / "pretrain" / "tinyshakespeare.txt"
ALPACA = SHARED / "sft" / "alpaca_en_demo.json"
XQUAD = SHARED / "qa-xquad-en" / "xquad.en.json"
TIME_TOLERANCE = 0.25
RSS_TOLERANCE = 0.15


def child(command: list[str], env: dict[str, str], log: Path) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (bytes) and CPU seconds (user + system) of a command run to
    completion. With one torch thread, CPU seconds are the wall time the run would have
    taken without waiting for a CPU: the figure to compare when other work shares it."""
    began = time.perf_counter()
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(command[:5])} failed:\n{tail}")
    return seconds, usage.ru_maxrss * 1024.0, usage.ru_utime + usage.ru_stime


def ragtune(*args: str) -> list[str]:
    return [sys.executable, "-m", "ragtune", *args]


def write(path: Path, settings: dict[str, Any]) -> Path:
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()))
    return path


def configurations(scratch: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (the run's arguments, the estimate's arguments)."""
    docs = scratch / "docs"
    docs.mkdir()
    articles = json.loads(XQUAD.read_text())["data"]
    paragraphs = [p["context"] for a in articles for p in a["paragraphs"]][:40]
    for number, text in enumerate(paragraphs):
        (docs / f"p{number:02}.txt").write_text(text)
    records = scratch / "alpaca16.json"
    records.write_text(json.dumps(json.loads(ALPACA.read_text())[:16]))
    finetune = {
        "max_length": 128,
        "batch_size": 2,
        "precision": "fp32",
        "eval_fraction": 0.0,
        "save_every": 1000,
        "lora_dropout": 0.05,
    }
    lora = write(scratch / "lora.yaml", {**finetune, "method": "lora", "max_steps": 4})
    full = write(scratch / "full.yaml", {**finetune, "method": "full", "max_steps": 3})
    char = ROOT / "examples" / "recipes" / "pretrain-shakespeare-char.yaml"
    char_flags = ["--max-steps", "200"]
    char_run = [*char_flags, "--eval-every", "100", "--sample-every", "100000"]
    bpe = write(
        scratch / "bpe.yaml",
        {
            "tokenizer": "bpe",
            "vocab_size": 2048,
            "size": "5m",
            "context": 256,
            "batch_size": 4,
            "max_steps": 40,
            "eval_every": 20,
            "eval_batches": 4,
            "save_every": 1000,
        },
    )
    shake = str(SHAKESPEARE)
    return {
        "ingest": (
            ["ingest", str(docs), "--index", str(scratch / "index")],
            ["rag", str(docs)],
        ),
        "lora": (
            ["finetune", "-c", str(lora), "-d", str(records), "-o", str(scratch / "lora")],
            ["lora", str(records), "-c", str(lora)],
        ),
        "full": (
            ["finetune", "-c", str(full), "-d", str(records), "-o", str(scratch / "full")],
            ["full", str(records), "-c", str(full)],
        ),
        "pretrain-char": (
            ["pretrain", "-c", str(char), "-d", shake, "-o", str(scratch / "char"), *char_run],
            ["pretrain", shake, "-c", str(char), *char_flags, "--eval-every", "100"],
        ),
        "pretrain-bpe": (
            ["pretrain", "-c", str(bpe), "-d", shake, "-o", str(scratch / "bpe")],
            ["pretrain", shake, "-c", str(bpe)],
        ),
    }


def fresh_probe(threads: int, env: dict[str, str]) -> None:
    """This machine measured again (matmuls, bandwidth, the tiny-Llama probe, a one-file
    ingest), replacing the cached figures the estimate reads."""
    code = (
        "from ragtune.train.estimate.hardware import hardware, measure_this\n"
        "from ragtune.train.estimate.rag import embedding_costs\n"
        f"measure_this({threads}, refresh=True)\n"
        f"embedding_costs(hardware('this', threads={threads}), refresh=True)\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows here.")
    parser.add_argument("--keep", type=Path, default=None, help="Run in this folder, kept.")
    parser.add_argument(
        "--fresh-probe",
        action="store_true",
        help="Measure this machine again right before each configuration.",
    )
    args = parser.parse_args()
    env = {
        **os.environ,
        "RAGTUNE_TORCH_THREADS": str(args.threads),
        "OMP_NUM_THREADS": str(args.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "RAGTUNE_PROGRESS_INTERVAL": "30",
    }
    rows = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        if args.keep is not None:
            scratch = args.keep
            scratch.mkdir(parents=True)
        for name, (run, estimate_args) in configurations(scratch).items():
            if args.only and name not in args.only:
                continue
            if args.fresh_probe:
                fresh_probe(args.threads, env)
            load_before = os.getloadavg()[0]
            done = subprocess.run(
                ragtune("estimate", *estimate_args, "--threads", str(args.threads), "--json"),
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(f"estimate {name} failed: {done.stderr.strip()}")
            estimate = json.loads(done.stdout)
            seconds, rss, cpu = child(ragtune(*run), env, scratch / f"{name}.log")
            row = {
                "name": name,
                "time_estimate": estimate["seconds"]["total"],
                "time_measured": seconds,
                "cpu_measured": cpu,
                "rss_estimate": estimate.get("memory_bytes", {}).get("total"),
                "rss_measured": rss,
                "phases": estimate["seconds"],
                "load": (load_before, os.getloadavg()[0]),
            }
            summary = scratch / name.split("-")[-1] / "summary.json"
            if summary.is_file():
                figures = json.loads(summary.read_text())
                row["loop_measured"] = figures["seconds"]
                row["loop_estimate"] = (
                    estimate["seconds"]["training"] + estimate["seconds"]["evaluation"]
                )
            if name == "ingest":
                row["index_estimate"] = estimate["rag"]["index_bytes"]
                row["index_measured"] = sum(
                    f.stat().st_size for f in (scratch / "index").rglob("*") if f.is_file()
                )
            rows.append(row)
            print(_line(row), flush=True)
    print(f"\nload average at start {load:.2f}; threads {args.threads}")
    print(_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def _error(estimate: float | None, measured: float) -> float | None:
    return None if estimate is None else estimate / measured - 1


def _line(row: dict[str, Any]) -> str:
    phases = ", ".join(f"{k} {v:.1f}" for k, v in row["phases"].items())
    loop = ""
    if "loop_measured" in row:
        loop = f" (loop {row['loop_measured']:.1f} s, estimate {row['loop_estimate']:.1f} s)"
    rss = row["rss_measured"] / 2**20
    load = f"load {row['load'][0]:.1f}-{row['load'][1]:.1f}"
    return (
        f"{row['name']}: measured {row['time_measured']:.1f} s (CPU {row['cpu_measured']:.1f} s)"
        f"{loop}, {rss:.0f} MB, {load}; "
        f"estimate {phases}"
    )


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| configuration | time est. s | measured s | error | CPU s | error | RSS est. MB "
        "| measured MB | error | within | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        time_error = _error(row["time_estimate"], row["time_measured"])
        rss_error = _error(row["rss_estimate"], row["rss_measured"])
        ok_time = time_error is not None and abs(time_error) <= TIME_TOLERANCE
        ok_rss = rss_error is None or abs(rss_error) <= RSS_TOLERANCE
        rss_est = "-" if row["rss_estimate"] is None else f"{row['rss_estimate'] / 2**20:.0f}"
        rss_err = "-" if rss_error is None else f"{rss_error:+.0%}"
        verdict = "yes" if ok_time and ok_rss else "NO"
        cpu_error = _error(row["time_estimate"], row["cpu_measured"])
        lines.append(
            f"| {row['name']} | {row['time_estimate']:.1f} | {row['time_measured']:.1f} | "
            f"{time_error:+.0%} | {row['cpu_measured']:.1f} | {cpu_error:+.0%} | {rss_est} | "
            f"{row['rss_measured'] / 2**20:.0f} | {rss_err} | {verdict} | "
            f"{row['load'][0]:.1f}-{row['load'][1]:.1f} |"
        )
        if "index_estimate" in row:
            error = row["index_estimate"] / row["index_measured"] - 1
            lines.append(
                f"| ingest: index on disk | {row['index_estimate'] / 2**20:.2f} MB est. | "
                f"{row['index_measured'] / 2**20:.2f} MB | {error:+.0%} | | | | | | | |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
