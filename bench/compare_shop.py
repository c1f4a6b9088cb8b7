"""The acceptance run of ``ragtune compare`` on the demo shop.

    .venv/bin/python bench/compare_shop.py [--budget 20m] [--questions 15] [--output DIR]
        [--routes base,rag,lora,lora-aug,lora+rag,pretrain] [--llm-questions N]

1. The demo shop is served on 127.0.0.1 and crawled from /products into a temporary
   index, as ``ragtune demo`` does.
2. ``ragtune compare --index INDEX -o DIR --budget B`` runs every route in a fresh
   process with one torch thread.
3. The acceptance checks of issue 17 are printed, each PASS or FAIL: the run kept to its
   budget; RAG's contains interval lies above the base model's and above plain LoRA's
   score; RAG's freshness is seconds, fine-tuning's minutes. Then, for reading beside
   them (no verdict): each arm's contains with its interval, plain against augmented
   LoRA, any arm stopped at its share, and each arm's at-scale estimate.
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

from ragtune.shop_server import crawl_shop


def checks(results: dict[str, Any], budget_s: float) -> list[tuple[str, bool]]:
    arms = results["arms"]

    def done(route: str) -> dict[str, Any] | None:
        arm = arms.get(route)
        return arm if arm and arm.get("status") == "done" else None

    rag, base, lora = done("rag"), done("base"), done("lora")
    made: list[tuple[str, bool]] = [
        (
            f"finished within the budget ({results['elapsed_s']:.0f}s of {budget_s:.0f}s)",
            results["elapsed_s"] <= budget_s,
        )
    ]
    if rag and base:
        made.append(
            (
                "RAG's contains interval above the base model's",
                rag["intervals"]["contains"][0] > base["intervals"]["contains"][1],
            )
        )
    if rag and lora:
        made.append(
            (
                "RAG above plain LoRA fine-tuning",
                rag["scores"]["contains"] > lora["scores"]["contains"],
            )
        )
        fresh_rag = (rag.get("freshness") or {}).get("seconds")
        fresh_lora = (lora.get("freshness") or {}).get("seconds")
        made.append(
            (
                f"freshness: RAG {fresh_rag}s, LoRA {fresh_lora}s",
                fresh_rag is not None and fresh_lora is not None and fresh_rag < 60 <= fresh_lora,
            )
        )
    return made


def summary(results: dict[str, Any]) -> list[str]:
    """One line an arm: its status, contains [95% CI], and at-scale estimate."""
    lines = []
    for route in results["routes"]:
        arm = results["arms"].get(route, {})
        if arm.get("status") != "done":
            lines.append(f"{route:13} {arm.get('status', 'missing')}: {arm.get('reason', '')}")
            continue
        low, high = arm["intervals"]["contains"] or (0.0, 0.0)
        stopped = " (stopped at its share)" if arm.get("stopped_at_budget") else ""
        scale = (arm.get("estimate") or {}).get("summary", "n/a")
        lines.append(
            f"{route:13} contains {arm['scores']['contains']:.2f} [{low:.2f}, {high:.2f}]"
            f"{stopped}; at scale: {scale}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="20m")
    parser.add_argument("--questions", type=int, default=15)
    parser.add_argument("--unanswerable", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--routes", default=None, help="default: ragtune compare's")
    parser.add_argument("--llm-questions", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ragtune-compare-") as scratch:
        index_dir = Path(scratch) / "index"
        chunks = crawl_shop(index_dir)
        output = args.output or Path(scratch) / "report"
        print(f"indexed the shop: {chunks} chunks; report in {output}", flush=True)
        env = {**os.environ, "RAGTUNE_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "ragtune",
                "compare",
                "--index",
                str(index_dir),
                "-o",
                str(output),
                "--budget",
                args.budget,
                "--overwrite",
                "--questions",
                str(args.questions),
                "--unanswerable",
                str(args.unanswerable),
                "--llm-questions",
                str(args.llm_questions),
                *(["--routes", args.routes] if args.routes else []),
            ],
            env=env,
        )
        if done.returncode != 0:
            raise SystemExit(f"ragtune compare failed with exit code {done.returncode}")
        print(f"wall time {time.perf_counter() - started:.0f}s")
        results = json.loads((output / "results.json").read_text())
        from ragtune.eval.compare.budget import parse_budget

        for name, passed in checks(results, parse_budget(args.budget)):
            print(f"{'PASS' if passed else 'FAIL'}  {name}")
        for line in summary(results):
            print(line)


if __name__ == "__main__":
    main()
