"""The whole route from scratch, as a user takes it, each step a command:

    ragtune tokenizer train -> ragtune pretrain -> ragtune finetune (LoRA, Alpaca records)
      -> ragtune export --format gguf -> llama.cpp (xllamacpp)

and llama.cpp's greedy tokens equal transformers' on the same prompt, so the model ragtune
made from nothing is served like SmolLM2. The model is tiny and barely trained: equality
of token ids, not quality, is what is checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.greedy import hf_greedy, llamacpp_greedy, load_model, prompt_ids
from tests.helpers import run_cli_in_process

from ragtune.runtime import configure_torch_threads

pytest.importorskip("xllamacpp", reason="llama.cpp checks need xllamacpp")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ALPACA = DATA / "sft" / "alpaca_en_demo.json"

configure_torch_threads()  # one thread: two cores are shared here (see the guide)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "shakespeare.txt"
    text = (DATA / "pretrain" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    path.write_text(text[:200_000], encoding="utf-8")
    return path


def test_tokenizer_pretrain_finetune_export_and_llamacpp_agree(
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def ragtune(*args: str) -> None:
        result = run_cli_in_process(capsys, monkeypatch, *args)
        assert result.returncode == 0, result.stderr[-3000:]

    tokenizer = tmp_path / "tokenizer"
    ragtune("tokenizer", "train", "-d", str(corpus), "-o", str(tokenizer), "--vocab-size", "600")
    run = tmp_path / "scratch"
    ragtune(
        "pretrain", "-d", str(corpus), "--tokenizer", str(tokenizer), "-o", str(run),
        "--layers", "2", "--heads", "4", "--dim", "64", "--context", "64",
        "--max-steps", "30", "--eval-every", "30", "--eval-batches", "2",
    )  # fmt: skip
    tuned = tmp_path / "tuned"
    ragtune(
        "finetune", "--base", str(run / "model"), "--data", str(ALPACA), "-o", str(tuned),
        "--max-steps", "3", "--batch-size", "2", "--max-length", "64", "--lr", "1e-2",
    )  # fmt: skip
    gguf = tmp_path / "scratch-tuned.gguf"
    ragtune("export", str(tuned / "adapter"), "--format", "gguf", "--output", str(gguf))

    merged = tmp_path / "merged"
    ragtune("merge", str(tuned / "adapter"), "--output", str(merged))
    for text in ("ROMEO: O, speak again", "First Citizen:\nWe are accounted poor 1234"):
        ids = prompt_ids(merged, text)
        assert llamacpp_greedy(gguf, ids) == hf_greedy(load_model(merged), ids)
