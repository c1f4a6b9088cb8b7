"""Answer quality on XQuAD (English): each ragtune answer mode against today's engine
(a pinned commit) and LlamaIndex's default query engine, on the same questions.

    .venv/bin/python bench/answers_xquad.py [--questions 60] [--unanswerable 20]
        [--held-out-articles 8] [--no-baseline] [--no-llamaindex] [--markdown FILE]

The unanswerable questions are honest: XQuAD's 48 articles are split by title
(``split_by_article``, seed 11), only the kept articles' paragraphs are indexed,
and the held-out articles' questions are asked of that index. A fixed random
sample (seed 11) of kept questions is the answerable set.

Runs, all on the same index contents, questions and bundled models:

- **ragtune, each answer mode** (``answer_mode=generate|extract|auto``), with the
  engine's default grounding (strict), in process.
- **today's engine**: the query engine of commit ``BASELINE_COMMIT`` (before issue
  #13), its source taken with ``git archive`` and run in a subprocess of this venv.
  It did not check sentences, so its faithfulness is n/a.
- **LlamaIndex** (``.venv-bench``, built by ``make bench``; skipped with a note when
  absent): its default engine calls the same loaded model through llama.cpp's own
  OpenAI-compatible HTTP server with ``OpenAILike``, greedy, the same repeat penalty
  and answer budget; ``SentenceSplitter``, top-2, "compact" prompts. It neither
  abstains nor cites, so those columns say 0 and n/a.

The LLM is the bundled SmolLM2-135M (GGUF, llama.cpp), answers up to 128 tokens.
Measures as ``ragtune eval answers`` (``ragtune.eval.answers``): SQuAD exact match
and token F1, contains, faithfulness, citation precision, abstention, false
abstention, latency.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ragtune import VectorStoreIndex
from ragtune.assets import DEFAULT_EMBEDDER
from ragtune.documents import Citation, Document, NodeWithScore, Response, TextNode
from ragtune.eval.answers import (
    AnswerEvaluation,
    AnswerScores,
    evaluate_answers,
    score_response,
    scores_table,
    summarise,
)
from ragtune.eval.squad import Question, context_documents, load_squad, split_by_article
from ragtune.llm.llamacpp import LlamaCppLLM
from ragtune.query.engine import ANSWER_MODES
from ragtune.runtime import torch_threads

ROOT = Path(__file__).resolve().parents[1]
QA = ROOT.parent / "shared" / "data" / "qa-xquad-en" / "xquad.en.json"
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
ANSWER_TOKENS = 128
SEED = 11
# The last commit before issue #13's grounded answers: "today's engine".
BASELINE_COMMIT = "b2e0b7d"

# Today's engine, run from its own source tree (PYTHONPATH), answering every question.
BASELINE_WORKER = r"""
import json, sys, tempfile, time
from pathlib import Path
request = json.load(sys.stdin)
import ragtune
assert ragtune.__file__.startswith(request["src"]), ragtune.__file__
from ragtune import Document, VectorStoreIndex
from ragtune.llm.llamacpp import LlamaCppLLM
llm = LlamaCppLLM(context_window=2048)
llm.load()
documents = [Document(text=p["text"], metadata=p["metadata"]) for p in request["paragraphs"]]
results = []
with tempfile.TemporaryDirectory() as scratch:
    index = VectorStoreIndex.from_documents(documents, persist_dir=Path(scratch) / "idx")
    engine = index.as_query_engine(llm=llm, answer_tokens=request["max_tokens"])
    for question in request["questions"]:
        started = time.perf_counter()
        response = engine.query(question)
        results.append({
            "answer": response.response,
            "not_in_sources": bool(response.metadata.get("not_in_sources")),
            "sources": [node.text for node in response.source_nodes],
            "citations": [citation.number for citation in response.citations],
            "seconds": time.perf_counter() - started,
        })
json.dump(results, sys.stdout)
"""

LLAMAINDEX_WORKER = r"""
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


def ragtune_runs(
    documents: list[Document],
    llm: LlamaCppLLM,
    answerable: Sequence[Question],
    unanswerable: Sequence[Question],
) -> list[AnswerEvaluation]:
    """Each answer mode, with the engine's default (strict) grounding, over one index."""
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        index = VectorStoreIndex.from_documents(documents, persist_dir=Path(scratch) / "idx")
        for mode in ANSWER_MODES:
            label = f"ragtune {mode}"
            engine = index.as_query_engine(llm=llm, answer_tokens=ANSWER_TOKENS, answer_mode=mode)
            print(f"  {label} ...", file=sys.stderr, flush=True)
            runs.append(evaluate_answers(engine, answerable, unanswerable, label=label))
    return runs


def baseline_run(
    documents: list[Document], asked: list[tuple[Question, bool]]
) -> AnswerEvaluation | str:
    """Today's engine (``BASELINE_COMMIT``) on the same questions, or why it could not run."""
    archived = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", BASELINE_COMMIT, "src"],
        capture_output=True,
    )
    if archived.returncode != 0:
        return f"commit {BASELINE_COMMIT} is not in this clone"
    with tempfile.TemporaryDirectory() as scratch:
        with tarfile.open(fileobj=io.BytesIO(archived.stdout)) as tar:
            tar.extractall(scratch, filter="data")
        source = str(Path(scratch) / "src")
        request = {
            "src": source,
            "max_tokens": ANSWER_TOKENS,
            "paragraphs": [{"text": d.text, "metadata": d.metadata} for d in documents],
            "questions": [question.question for question, _ in asked],
        }
        completed = subprocess.run(
            [sys.executable, "-c", BASELINE_WORKER],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=7200,
            env={**os.environ, "PYTHONPATH": source},
        )
    if completed.returncode != 0:
        raise SystemExit(f"today's engine failed: {completed.stderr[-2000:]}")
    records = []
    for (question, answerable), result in zip(asked, json.loads(completed.stdout), strict=True):
        nodes = [NodeWithScore(TextNode(text=text), 0.0) for text in result["sources"]]
        response = Response(
            result["answer"],
            nodes,
            {"not_in_sources": result["not_in_sources"]},
            [Citation(n, nodes[n - 1]) for n in result["citations"] if 0 < n <= len(nodes)],
        )
        records.append(score_response(question, response, answerable, result["seconds"]))
    label = f"today's engine ({BASELINE_COMMIT})"
    return AnswerEvaluation(records, summarise(records, label))


def llamaindex_run(
    documents: list[Document], llm: LlamaCppLLM, asked: list[tuple[Question, bool]]
) -> AnswerEvaluation | str:
    """LlamaIndex's default query engine on the same questions, or why it could not run."""
    if not BENCH_PYTHON.exists():
        return f"{BENCH_PYTHON.relative_to(ROOT)} is missing (make bench builds it)"
    request = {
        "threads": torch_threads(),
        "embedder": str(DEFAULT_EMBEDDER.require()),
        "api_base": f"{llm.http_url}/v1",
        "model": llm.name,
        "context": llm.context_window,
        "max_tokens": ANSWER_TOKENS,
        "paragraphs": [{"text": d.text, "metadata": d.metadata} for d in documents],
        "questions": [question.question for question, _ in asked],
    }
    completed = subprocess.run(
        [str(BENCH_PYTHON), "-c", LLAMAINDEX_WORKER],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=7200,
    )
    if completed.returncode != 0:
        raise SystemExit(f"LlamaIndex worker failed: {completed.stderr[-2000:]}")
    theirs = json.loads(completed.stdout)
    records = [
        score_response(question, Response(answer), answerable, seconds)
        for (question, answerable), answer, seconds in zip(
            asked, theirs["answers"], theirs["seconds"], strict=True
        )
    ]
    return AnswerEvaluation(records, summarise(records, "LlamaIndex default engine"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=60, help="answerable questions")
    parser.add_argument("--unanswerable", type=int, default=20)
    parser.add_argument("--held-out-articles", type=int, default=8)
    parser.add_argument("--no-baseline", action="store_true", help="skip today's engine")
    parser.add_argument("--no-llamaindex", action="store_true")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()

    kept, held = split_by_article(load_squad(QA), args.held_out_articles, seed=SEED)
    sampler = random.Random(SEED)
    answerable = sampler.sample(kept, args.questions)
    unanswerable = sampler.sample(held, args.unanswerable)
    asked = [(q, True) for q in answerable] + [(q, False) for q in unanswerable]
    documents = context_documents(kept)
    llm = LlamaCppLLM(context_window=2048)
    llm.load()
    print(
        f"{len(answerable)} answerable XQuAD questions over {len(documents)} indexed paragraphs, "
        f"{len(unanswerable)} unanswerable ones from {args.held_out_articles} held-out articles "
        f"(seed {SEED}); LLM {llm.name} ({llm.threads} threads), answers up to "
        f"{ANSWER_TOKENS} tokens"
    )
    started = time.perf_counter()
    runs = ragtune_runs(documents, llm, answerable, unanswerable)
    notes: list[str] = []
    if args.no_baseline:
        notes.append("today's engine: skipped (--no-baseline)")
    else:
        print("  today's engine ...", file=sys.stderr, flush=True)
        _keep(runs, notes, "today's engine", baseline_run(documents, asked))
    if args.no_llamaindex:
        notes.append("LlamaIndex: skipped (--no-llamaindex)")
    else:
        print("  LlamaIndex ...", file=sys.stderr, flush=True)
        _keep(runs, notes, "LlamaIndex", llamaindex_run(documents, llm, asked))
    scores: list[AnswerScores] = [run.scores for run in runs]
    table = scores_table(scores)
    print(table, end="")
    for note in notes:
        print(note)
    print(f"({time.perf_counter() - started:.0f} s in all)")
    if args.markdown:
        args.markdown.write_text(table)
    for question in answerable[:3]:
        print(f"\nQ: {question.question}\n gold: {question.answers[0]!r}")
        for run in runs:
            record = next(r for r in run.records if r.id == question.id)
            print(f" {run.scores.label}: {record.answer[:160]!r}")


def _keep(
    runs: list[AnswerEvaluation], notes: list[str], name: str, result: AnswerEvaluation | str
) -> None:
    if isinstance(result, str):
        notes.append(f"{name}: not run, {result}")
    else:
        runs.append(result)


if __name__ == "__main__":
    main()
