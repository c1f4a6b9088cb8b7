"""Knowledge injection: does fine-tuning on the demo shop's pages teach SmolLM2 the shop?

    .venv/bin/python bench/knowledge_injection.py [--epochs 4] [--no-rag-finetuned]

1. The demo shop is served on 127.0.0.1 and ingested as `ragtune demo` does (crawl from
   /products, no rendering) into a temporary index.
2. `ragtune finetune --from-index INDEX --config examples/recipes/knowledge-from-index.yaml`
   (LoRA r=32 on all linear layers, lr 1e-3, 256-token blocks of the pages' text, every
   token trained) continues training the bundled SmolLM2-135M-Instruct on that index's
   chunks, in a fresh process with one torch thread.
3. The questions below are asked:
   - closed book (no retrieval), the user's question alone through the model's chat
     template (`TransformersLLM`, greedy), before (base model) and after (base + adapter);
   - with RAG: the same index and ragtune's query engine with the default LLM (the same
     SmolLM2 as a Q4_1 GGUF through llama.cpp), and, unless --no-rag-finetuned, with the
     fine-tuned model (transformers, base + adapter) as the query engine's LLM.

A question counts as answered when one of its gold answers appears in the answer, both
lower-cased, punctuation dropped, digit groups joined and units split off ("350,000" =
"350000", "80mg" = "80 mg"), compared as whole words. The questions are the ten of tests/test_retrieval_quality.py, the demo
question, and four more facts from the same product pages (examples/shop/products.json).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ragtune import VectorStoreIndex
from ragtune.llm.transformers_backend import TransformersLLM
from ragtune.shop_server import crawl_shop
from ragtune.train.models.base_model import resolve_base_model

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "examples" / "recipes" / "knowledge-from-index.yaml"
ANSWER_TOKENS = 64

# (question, gold answers: any one of them in the answer counts)
QUESTIONS: list[tuple[str, list[str]]] = [
    ("What is the flavor of the dark energy potion?", ["cherry cola"]),
    ("How much does the Griffin Kite cost?", ["29.50"]),
    ("Who illustrated the Mapmaker's Atlas?", ["Wren Hollow"]),
    (
        "How long does the sand take to run through the hourglass?",
        ["25 minutes", "twenty-five minutes"],
    ),
    ("What is the maximum weight the hammock can hold?", ["180 kilograms", "180 kg"]),
    ("Which card game won the Golden Meeple award?", ["Troll Bridge"]),
    ("Which customer walked across hot coals at a festival?", ["Rook"]),
    ("How many Scoville units is the hot sauce?", ["350,000"]),
    ("Which product is cut by hand in Portland?", ["Sunstone"]),
    ("What is the price of the Bottomless Backpack?", ["98"]),
    ("Which speaker helps a baby sleep through the night?", ["Mermaid"]),
    ("How much caffeine does the Dark Energy Potion contain?", ["80 mg", "80 milligrams"]),
    ("How many players can play the Troll Bridge Toll Kit?", ["three to six", "3 to 6", "3-6"]),
    ("What sizes are the Dragonscale Boots available in?", ["36 to 48", "36-48"]),
    ("How long is the Basilisk Hot Sauce aged?", ["six months", "6 months"]),
]


def words(text: str) -> list[str]:
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text.lower())
    text = re.sub(r"(?<=\d)(?=[a-z])|(?<=[a-z])(?=\d)", " ", text)  # "80mg" = "80 mg"
    return re.sub(r"[^\w\s]|_", " ", text).split()


def answered(answer: str, golds: list[str]) -> bool:
    said = words(answer)
    for gold in golds:
        wanted = words(gold)
        if any(said[i : i + len(wanted)] == wanted for i in range(len(said) - len(wanted) + 1)):
            return True
    return False


def finetune(index_dir: Path, output: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "ragtune",
        "finetune",
        "--from-index",
        str(index_dir),
        "--config",
        str(args.recipe),
        "--output",
        str(output),
        "--overwrite",
    ]
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    env = {**os.environ, "RAGTUNE_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ragtune finetune failed:\n{done.stderr[-3000:]}")
    return json.loads((output / "summary.json").read_text())


def closed_book(llm: TransformersLLM) -> list[str]:
    return [
        llm.chat([{"role": "user", "content": question}], max_tokens=ANSWER_TOKENS)
        for question, _ in QUESTIONS
    ]


def with_rag(index_dir: Path, llm: Any = None) -> list[str]:
    engine = VectorStoreIndex.load(index_dir).as_query_engine(llm=llm)
    return [engine.query(question).response for question, _ in QUESTIONS]


def score(answers: list[str]) -> list[bool]:
    return [answered(answer, golds) for answer, (_, golds) in zip(answers, QUESTIONS, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument(
        "--epochs", type=float, default=4, help="Over the shop's pages (recipe: 8)."
    )
    parser.add_argument(
        "--no-rag-finetuned", action="store_true", help="Skip RAG with the tuned model."
    )
    parser.add_argument("--show", action="store_true", help="Print every answer.")
    parser.add_argument("--questions", type=int, default=None, help="Ask only the first N.")
    args = parser.parse_args()
    if args.questions:
        del QUESTIONS[args.questions :]

    base_dir = resolve_base_model(None)
    results: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-knowledge-") as tmp:
        scratch = Path(tmp)
        index_dir = scratch / "index"
        started = time.perf_counter()
        chunks = crawl_shop(index_dir)
        seconds["ingest"] = time.perf_counter() - started
        print(f"demo shop indexed: {chunks} chunks in {seconds['ingest']:.1f} s", flush=True)

        started = time.perf_counter()
        summary = finetune(index_dir, scratch / "run", args)
        seconds["finetune (process)"] = time.perf_counter() - started
        adapter = Path(summary["saved"])
        print(
            f"fine-tuned ({args.recipe.name}, epochs {args.epochs}): {summary['steps']} steps, "
            f"{summary['tokens']} tokens in {summary['seconds']:.1f} s of training "
            f"({summary['tokens_per_second']:.0f} tokens/s), "
            f"{seconds['finetune (process)']:.1f} s for the whole process; "
            f"final loss {summary['final_loss']:.3f}",
            flush=True,
        )

        runs = [
            ("base model, closed book", lambda: closed_book(TransformersLLM(base_dir))),
            (
                "fine-tuned, closed book",
                lambda: closed_book(TransformersLLM(base_dir, adapter_dir=adapter)),
            ),
            ("RAG, base model (default llama.cpp Q4_1)", lambda: with_rag(index_dir)),
        ]
        if not args.no_rag_finetuned:
            runs.append(
                (
                    "RAG, fine-tuned (transformers, base + adapter)",
                    lambda: with_rag(index_dir, TransformersLLM(base_dir, adapter_dir=adapter)),
                )
            )
        for name, run in runs:
            started = time.perf_counter()
            results[name] = run()
            seconds[name] = time.perf_counter() - started
            hits = sum(score(results[name]))
            print(f"{name}: {hits}/{len(QUESTIONS)} in {seconds[name]:.1f} s", flush=True)

    print()
    print(f"| system | answered (of {len(QUESTIONS)}) | seconds |")
    print("|---|---:|---:|")
    for name, answers in results.items():
        print(f"| {name} | {sum(score(answers))} | {seconds[name]:.0f} |")
    print()
    names = list(results)
    print("per question (" + ", ".join(f"{i + 1} = {name}" for i, name in enumerate(names)) + "):")
    for number, (question, golds) in enumerate(QUESTIONS):
        marks = " ".join("Y" if answered(results[name][number], golds) else "." for name in names)
        print(f"  {marks}  {question}  [{golds[0]}]")
        if args.show:
            for name in names:
                print(f"      {name}: {' '.join(results[name][number].split())[:160]}")
    total = sum(seconds.values())
    print(
        f"\ntotal {total:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ")"
    )


if __name__ == "__main__":
    main()
