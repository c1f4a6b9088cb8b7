"""How long a person waits for the command line: ``--help``, ``retrieve`` and ``ask``.

.venv/bin/python bench/cli_startup.py [--runs 5] [--chunks 10000] [--before SRC]
                                      [--index DIR] [--no-generate]

Each command runs in a fresh interpreter, as a user runs it, and the figure is the
median over --runs runs: ``--help`` and ``retrieve`` (on a --chunks index) to exit,
in wall-clock seconds and in the CPU seconds the command used (a machine busy with
other work inflates those far less); ``ask`` to the first byte of the answer on
stdout, with the default answer mode (quoted from the sources, no LLM) and with
``--answer generate`` (the bundled SmolLM2 loaded and asked). The index holds the
real XQuAD paragraphs padded with synthetic chunks (``bench/store_latency.py``),
built once with this checkout; --index reuses one built earlier.

--before SRC times a second source tree on the same index and the same interpreter,
taking turns with this one, e.g. the last commit: ``git worktree add
/tmp/startup-base HEAD`` and ``--before /tmp/startup-base/src`` (``git worktree
remove /tmp/startup-base`` after). An untimed first run of each command makes the
ONNX export if need be, so no timed run pays the one-time preparation.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.store_latency import QA, real_chunks, synthetic_chunks  # noqa: E402

from ragtune import VectorStoreIndex  # noqa: E402
from ragtune.eval.squad import context_documents, load_squad  # noqa: E402

QUESTION = "What did the Broncos defeat the Panthers by?"
TARGET_HELP_S = 0.5
TARGET_RETRIEVE_S = 1.5


def build_index(directory: Path, chunks: int) -> None:
    """XQuAD's paragraphs, embedded, plus synthetic chunks up to ``chunks`` in all."""
    questions = load_squad(QA)
    index = VectorStoreIndex.from_documents(context_documents(questions), persist_dir=directory)
    real = real_chunks(index, questions)
    padding = synthetic_chunks(real, max(0, chunks - index.store.count()))
    for start in range(0, len(padding), 10_000):
        batch = padding[start : start + 10_000]
        index.store.replace_documents(sorted({c.doc_id for c in batch}), batch)
    print(f"index: {index.store.count()} chunks in {directory}")
    index.close()


def environment(src: Path | None) -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "120"}
    if src is not None:  # ahead of the editable install's path entry
        env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep)
    return env


def to_exit(name: str, args: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall-clock seconds to exit, and the CPU seconds the command used (user and system),
    which a machine busy with other work inflates far less."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "ragtune", *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {name: wall, f"{name}, CPU": cpu}


def to_first_byte(name: str, args: list[str], env: dict[str, str]) -> dict[str, float]:
    """Seconds until the command writes its first byte to stdout (then it runs to the end)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "ragtune", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    first = process.stdout.read(1)
    elapsed = time.perf_counter() - started
    process.stdout.read()
    if process.wait() != 0 or not first:
        raise RuntimeError(f"ragtune {' '.join(args)} failed")
    return {name: elapsed}


def figures(
    trees: dict[str, Path | None], index: Path, runs: int, generate: bool
) -> dict[str, dict[str, float]]:
    """Median seconds per measure and tree; the trees take turns, so a busy moment on
    the machine falls on both alike."""
    ask = ["ask", QUESTION, "--index", str(index)]
    cases: list[Callable[[dict[str, str]], dict[str, float]]] = [
        lambda env: to_exit("--help", ["--help"], env),
        lambda env: to_exit("retrieve", ["retrieve", QUESTION, "--index", str(index)], env),
        lambda env: to_first_byte("ask, first byte (extract)", ask, env),
    ]
    if generate:
        generated = [*ask, "--answer", "generate"]
        cases.append(lambda env: to_first_byte("ask, first byte (generate)", generated, env))
    envs = {label: environment(src) for label, src in trees.items()}
    table: dict[str, dict[str, float]] = {label: {} for label in trees}
    for run in cases:
        samples: dict[str, dict[str, list[float]]] = {label: {} for label in trees}
        for env in envs.values():
            run(env)  # the page cache warm, as for a person's second command
        for _ in range(runs):
            for label, env in envs.items():
                for measure, value in run(env).items():
                    samples[label].setdefault(measure, []).append(value)
        for label in trees:
            for measure, values in samples[label].items():
                table[label][measure] = statistics.median(values)
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--before", type=Path, help="another source tree to time (its src/)")
    parser.add_argument("--index", type=Path, help="an index built earlier by this script")
    parser.add_argument(
        "--no-generate", action="store_true", help="skip ask --answer generate (the slowest)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        index = args.index or Path(scratch) / "index"
        if not (index / "ragtune.json").exists():
            build_index(index, args.chunks)
        trees: dict[str, Path | None] = {"after": None}
        if args.before is not None:
            trees = {"before": args.before, "after": None}
        load = os.getloadavg()[0]
        table = figures(trees, index, args.runs, not args.no_generate)
    print(
        f"median of {args.runs} runs, seconds, {os.cpu_count()} CPUs, "
        f"load average {load:.1f} before and {os.getloadavg()[0]:.1f} after"
    )
    print(f"{'command':<28}" + "".join(f"{label:>9}" for label in table))
    for name in table["after"]:
        print(f"{name:<28}" + "".join(f"{table[label][name]:9.2f}" for label in table))
    after = table["after"]
    for name, target in (("--help", TARGET_HELP_S), ("retrieve", TARGET_RETRIEVE_S)):
        verdict = "met" if after[name] <= target else "NOT met"
        print(f"target {name} <= {target} s: {verdict}")


if __name__ == "__main__":
    main()
