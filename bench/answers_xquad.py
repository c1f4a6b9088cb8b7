"""Answer quality on XQuAD (English): ragtune's query engine against LlamaIndex's
default query engine, the same LLM and embedder on both sides.

    .venv/bin/python bench/answers_xquad.py [--questions 60]

A fixed random sample of XQuAD questions (seed 11) over all 240 paragraphs.
The LLM is the bundled SmolLM2-135M (GGUF, llama.cpp): ragtune calls it in
process; LlamaIndex (`.venv-bench`, in a subprocess) calls the same loaded
model through llama.cpp's own OpenAI-compatible HTTP server with LlamaIndex's
`OpenAILike`, greedy, the same repeat penalty and answer budget (128 tokens).
Both embed with the same MiniLM directory and use their own defaults
otherwise: ragtune hybrid top-4 with its grounded prompt; LlamaIndex
`SentenceSplitter`, top-2 and its "compact" refine prompts. Scored with
SQuAD's exact match and token F1 (answers lower-cased, punctuation and
articles removed, best over the gold answers).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import string
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from ragtune import VectorStoreIndex
from ragtune.assets import DEFAULT_EMBEDDER
from ragtune.eval.squad import Question, context_documents, load_squad
from ragtune.llm.llamacpp import LlamaCppLLM
from ragtune.runtime import torch_threads

ROOT = Path(__file__).resolve().parents[1]
QA = ROOT.parent / "shared" / "data" / "qa-xquad-en" / "xquad.en.json"
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
ANSWER_TOKENS = 128

WORKER = r"""
import json, sys, time
request = json.load(sys.stdin)
import torch
torch.set_num_threads(request["threads"])
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.llms.openai_like import OpenAILike

Settings.embed_model = HuggingFaceEmbedding(model_name=request["embedder"])
Settings.llm = OpenAILike(
    api_base=request["api_base"], api_key="none", model=request["model"],
    is_chat_model=True, context_window=request["context"], max_tokens=request["max_tokens"],
    temperature=0.0, additional_kwargs={"extra_body": {"repeat_penalty": 1.15}}, timeout=120,
)
documents = [Document(text=p["text"], metadata=p["metadata"]) for p in request["paragraphs"]]
index = VectorStoreIndex.from_documents(documents)
engine = index.as_query_engine()
answers, seconds = [], []
for question in request["questions"]:
    started = time.perf_counter()
    answers.append(str(engine.query(question)))
    seconds.append(time.perf_counter() - started)
json.dump({"answers": answers, "seconds": seconds}, sys.stdout)
"""


def normalise(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(answer: str, golds: list[str]) -> float:
    return float(any(normalise(answer) == normalise(gold) for gold in golds))


def f1(answer: str, golds: list[str]) -> float:
    best = 0.0
    predicted = normalise(answer).split()
    for gold in golds:
        expected = normalise(gold).split()
        common = Counter(predicted) & Counter(expected)
        overlap = sum(common.values())
        if overlap:
            precision, recall = overlap / len(predicted), overlap / len(expected)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def contains(answer: str, golds: list[str]) -> float:
    """Lenient: the normalised gold answer appears in the normalised answer."""
    return float(any(normalise(gold) in normalise(answer) for gold in golds))


def scores(answers: list[str], questions: list[Question]) -> tuple[float, float, float]:
    pairs = list(zip(answers, questions, strict=True))
    return (
        statistics.mean(exact_match(a, q.answers) for a, q in pairs),
        statistics.mean(f1(a, q.answers) for a, q in pairs),
        statistics.mean(contains(a, q.answers) for a, q in pairs),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=60)
    args = parser.parse_args()
    questions = load_squad(QA)
    sample = random.Random(11).sample(questions, args.questions)
    documents = context_documents(questions)
    llm = LlamaCppLLM(context_window=2048)
    llm.load()
    print(
        f"{len(sample)} XQuAD questions (seed 11) over {len(documents)} paragraphs; "
        f"LLM {llm.name} ({llm.threads} threads), answers up to {ANSWER_TOKENS} tokens"
    )
    with tempfile.TemporaryDirectory() as scratch:
        index = VectorStoreIndex.from_documents(documents, persist_dir=Path(scratch) / "idx")
        engine = index.as_query_engine(llm=llm, answer_tokens=ANSWER_TOKENS)
        ours, our_seconds = [], []
        for question in sample:
            started = time.perf_counter()
            ours.append(engine.query(question.question).response)
            our_seconds.append(time.perf_counter() - started)

    request = {
        "threads": torch_threads(),
        "embedder": str(DEFAULT_EMBEDDER.require()),
        "api_base": f"{llm.http_url}/v1",
        "model": llm.name,
        "context": llm.context_window,
        "max_tokens": ANSWER_TOKENS,
        "paragraphs": [{"text": d.text, "metadata": d.metadata} for d in documents],
        "questions": [q.question for q in sample],
    }
    completed = subprocess.run(
        [str(BENCH_PYTHON), "-c", WORKER],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if completed.returncode != 0:
        raise SystemExit(f"LlamaIndex worker failed: {completed.stderr[-2000:]}")
    theirs = json.loads(completed.stdout)

    print(f"{'system':<28} {'EM':>6} {'F1':>6} {'contains':>9} {'p50 s':>7}")
    for name, answers, seconds in (
        ("ragtune query engine", ours, our_seconds),
        ("LlamaIndex default engine", theirs["answers"], theirs["seconds"]),
    ):
        em, f1_score, contained = scores(answers, sample)
        print(
            f"{name:<28} {em:6.3f} {f1_score:6.3f} {contained:9.3f} "
            f"{statistics.median(seconds):7.2f}"
        )
    for question, mine, other in list(zip(sample, ours, theirs["answers"], strict=True))[:3]:
        print(f"\nQ: {question.question}\n gold: {question.answers[0]!r}")
        print(f" ragtune:    {mine[:160]!r}\n LlamaIndex: {other[:160]!r}")


if __name__ == "__main__":
    main()
