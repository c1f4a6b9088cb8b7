"""Training from scratch: `ragtune pretrain` and `ragtune sample` on tiny models.

The text is the first 120 KB of tiny Shakespeare (../shared/data/pretrain), the models are
a few tens of thousands of parameters, so each run takes seconds. Quality is asserted as
"the validation loss falls well below where it started" (a margin far wider than any
difference between CPUs), never as an exact float.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import assert_one_line_error, run_cli_in_process

from ragtune.errors import TrainingError
from ragtune.runtime import configure_torch_threads
from ragtune.train.config import build_settings
from ragtune.train.pretrain.config import PretrainConfig
from ragtune.train.pretrain.model import LearningRate
from ragtune.train.pretrain.run import pretrain
from ragtune.train.pretrain.sizes import PRESETS, ModelShape, flops_per_token, parameters

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared/data/pretrain/tinyshakespeare.txt"
RECIPES = Path(__file__).resolve().parents[1] / "examples/recipes"
TINY = ["--layers", "2", "--heads", "2", "--dim", "32", "--context", "32"]

configure_torch_threads()  # one thread: two cores are shared here (see the guide)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "shakespeare.txt"
    path.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:120_000], encoding="utf-8")
    return path


def tiny_config(corpus: Path, output: Path, **extra: Any) -> PretrainConfig:
    settings: dict[str, Any] = {
        "data": str(corpus),
        "output": str(output),
        "tokenizer": "char",
        "layers": 2,
        "heads": 2,
        "dim": 32,
        "context": 32,
        "batch_size": 8,
        "max_steps": 40,
        "warmup_steps": 5,
        "learning_rate": 3e-3,
        "eval_every": 20,
        "eval_batches": 4,
        "save_every": 10,
    }
    settings.update(extra)
    return PretrainConfig(**settings).validate()


@pytest.fixture(scope="module")
def finished(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One complete run through the command line, shared by the tests that read it."""
    output = tmp_path_factory.mktemp("runs") / "shakespeare"
    config = tiny_config(corpus, output, sample_every=20, sample_tokens=30, sample_prompt="ROMEO:")
    pretrain(config)
    return output


# ----------------------------------------------------------------------------- a run


def test_a_run_learns_and_writes_everything_a_run_writes(finished: Path) -> None:
    summary = json.loads((finished / "summary.json").read_text())
    assert summary["steps"] == 40
    # From ln(vocabulary) (about 5.6) to well below: a wide margin on any CPU.
    assert summary["val_loss_start"] > 5.0
    assert summary["val_loss"] < summary["val_loss_start"] - 1.5
    assert summary["val_perplexity"] == pytest.approx(math.exp(summary["val_loss"]), rel=1e-3)
    assert summary["parameters"] == parameters(
        ModelShape(layers=2, heads=2, dim=32, context=32), summary["shape"]["vocab"]
    )
    assert 0 < summary["mfu"] < 1
    assert summary["tokens"] == 40 * 8 * 32
    assert (finished / "loss.png").read_bytes().startswith(b"\x89PNG")
    records = [json.loads(line) for line in (finished / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 41))
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evals] == [0, 20, 40]
    assert all("val_perplexity" in r for r in evals[1:])
    samples = [r["sample"] for r in records if "sample" in r]
    assert len(samples) == 2 and all(isinstance(s, str) for s in samples)
    assert (finished / "data" / "tokens.bin").is_file()
    assert (finished / "tokenizer" / "tokenizer.json").is_file()


def test_the_model_is_a_plain_llama_that_transformers_loads(finished: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(finished / "model", use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(finished / "model")
    assert type(model).__name__ == "LlamaForCausalLM"
    text = "ROMEO: é ü 東京 🙂"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text
    assert model.config.max_position_embeddings == 32


def test_sample_continues_a_prompt(
    finished: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_cli_in_process(
        capsys, monkeypatch, "sample", str(finished / "model"), "-p", "ROMEO:", "-n", "40"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ROMEO:")
    assert len(result.stdout.strip()) > len("ROMEO:")
    again = run_cli_in_process(
        capsys, monkeypatch, "sample", str(finished / "model"), "-p", "ROMEO:", "-n", "40"
    )
    assert again.stdout == result.stdout  # seeded


def test_sample_refuses_what_is_not_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_cli_in_process(capsys, monkeypatch, "sample", str(tmp_path))
    assert_one_line_error(result, "config.json")
    result = run_cli_in_process(capsys, monkeypatch, "sample", str(tmp_path), "-n", "0")
    assert_one_line_error(result, "--max-tokens")


# ----------------------------------------------------------------------------- resume, reuse


def test_a_resumed_run_takes_the_same_batches_and_ends_the_same(
    corpus: Path, tmp_path: Path
) -> None:
    whole = pretrain(tiny_config(corpus, tmp_path / "whole", max_steps=30, eval_every=15))

    def interrupt(record: dict[str, Any]) -> None:
        if record["step"] == 17:  # after the checkpoint at step 10, before the one at 20
            raise KeyboardInterrupt

    interrupted = tiny_config(corpus, tmp_path / "resumed", max_steps=30, eval_every=15)
    with pytest.raises(KeyboardInterrupt):
        pretrain(interrupted, on_step=interrupt)
    resumed = pretrain(interrupted, resume=True)
    assert resumed.result.resumed_from == 10
    first = [r["loss"] for r in whole.result.history if "loss" in r]
    second = [r["loss"] for r in resumed.result.history if "loss" in r]
    assert len(first) == len(second) == 30
    assert second == pytest.approx(first, rel=1e-4, abs=1e-5)
    assert resumed.result.eval_loss_end == pytest.approx(whole.result.eval_loss_end, rel=1e-4)


def test_the_token_file_is_reused_until_the_text_changes(corpus: Path, tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text(corpus.read_text(encoding="utf-8"), encoding="utf-8")
    config = tiny_config(text, tmp_path / "run", max_steps=2, eval_every=None)
    pretrain(config)
    tokens = tmp_path / "run" / "data" / "tokens.bin"
    first = tokens.stat().st_ino
    pretrain(config, overwrite=True)
    assert tokens.stat().st_ino == first  # same text, same tokenizer: not tokenized again
    text.write_text(text.read_text(encoding="utf-8") + "\nA new line.\n", encoding="utf-8")
    pretrain(config, overwrite=True)
    assert tokens.stat().st_ino != first


def test_resuming_with_another_tokenizer_is_refused(corpus: Path, tmp_path: Path) -> None:
    config = tiny_config(corpus, tmp_path / "run", max_steps=10, save_every=5)
    pretrain(config)
    other = tiny_config(corpus, tmp_path / "run", max_steps=20, tokenizer="bpe", vocab_size=300)
    with pytest.raises(TrainingError, match="another tokenizer"):
        pretrain(other, resume=True)
    changed = tiny_config(corpus, tmp_path / "run", max_steps=20, batch_size=4)
    with pytest.raises(TrainingError, match="batch_size 8 -> 4"):
        pretrain(changed, resume=True)


def test_an_existing_run_is_kept_unless_resumed_or_overwritten(
    finished: Path, corpus: Path
) -> None:
    before = (finished / "summary.json").read_bytes()
    with pytest.raises(TrainingError, match="already holds a training run"):
        pretrain(tiny_config(corpus, finished))
    assert (finished / "summary.json").read_bytes() == before


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"", ("no text",)),
        (b"   \n\n  ", ("no text",)),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, ("not UTF-8",)),
        (b"To be, or not to be.\n", ("each needs one window", "context + 1")),
    ],
    ids=["empty", "blank", "binary", "smaller-than-one-window"],
)
def test_a_corpus_that_cannot_train_is_one_line_and_writes_nothing(
    content: bytes,
    fragments: tuple[str, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = tmp_path / "corpus.txt"
    text.write_bytes(content)
    output = tmp_path / "run"
    result = run_cli_in_process(
        capsys, monkeypatch, "pretrain", "-d", str(text), "-o", str(output), "--tokenizer",
        "char", *TINY,
    )  # fmt: skip
    assert_one_line_error(result, *fragments)
    assert not output.exists()


def test_a_vocabulary_the_corpus_cannot_fill_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = tmp_path / "corpus.txt"
    text.write_text("the cat sat on the mat. " * 200, encoding="utf-8")
    output = tmp_path / "run"
    result = run_cli_in_process(
        capsys, monkeypatch, "pretrain", "-d", str(text), "-o", str(output), "--vocab-size",
        "5000", *TINY,
    )  # fmt: skip
    assert_one_line_error(result, "fills only", "--vocab-size")
    assert not output.exists()


def test_a_size_that_cannot_fit_is_refused_before_allocating(
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    output = tmp_path / "run"
    result = run_cli_in_process(
        capsys, monkeypatch, "pretrain", "-d", str(corpus), "-o", str(output), "--tokenizer",
        "char", "--size", "125m", "--batch-size", "100000",
    )  # fmt: skip
    assert_one_line_error(result, "GiB to train", "free")
    assert not output.exists()


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--dim", "30", "--heads", "4", "--layers", "2"], "multiple of heads"),
        (["--size", "7b"], "unknown size"),
        (["--batch-size", "0"], "batch_size must be positive"),
        (["--lr", "-1"], "learning_rate"),
        (["--tokenizer", "/nonexistent/tok"], "not a tokenizer directory"),
        (["--precision", "fp8"], "precision must be one of"),
    ],
)
def test_bad_settings_are_one_line_errors(
    flags: list[str],
    fragment: str,
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    output = tmp_path / "run"
    result = run_cli_in_process(
        capsys, monkeypatch, "pretrain", "-d", str(corpus), "-o", str(output), *flags
    )
    assert_one_line_error(result, fragment)
    assert not output.exists()


def test_a_hostile_recipe_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("layers: !!python/object/apply:os.system ['echo owned']\n")
    result = run_cli_in_process(capsys, monkeypatch, "pretrain", "-c", str(recipe))
    assert_one_line_error(result, "not valid YAML")
    recipe.write_text("lora_r: 8\n")  # a fine-tuning setting is not a pretraining one
    result = run_cli_in_process(capsys, monkeypatch, "pretrain", "-c", str(recipe))
    assert_one_line_error(result, "unknown setting 'lora_r'")


# ----------------------------------------------------------------------------- recipes, sizes


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("pretrain-*.yaml")), ids=lambda p: p.stem)
def test_every_pretraining_recipe_is_valid(recipe: Path) -> None:
    config = build_settings(recipe, {}, PretrainConfig)
    assert config.shape().layers > 0


def test_the_shakespeare_recipe_is_nanogpts_cpu_configuration() -> None:
    config = build_settings(RECIPES / "pretrain-shakespeare-char.yaml", {}, PretrainConfig)
    shape = config.shape()
    assert (shape.layers, shape.heads, shape.dim, shape.context) == (4, 4, 128, 64)
    assert (config.batch_size, config.max_steps, config.warmup_steps) == (12, 2000, 100)
    assert (config.learning_rate, config.min_lr, config.beta2) == (1e-3, 1e-4, 0.99)
    assert (config.eval_every, config.eval_batches, config.tokenizer) == (250, 20, "char")


def test_list_sizes_shows_every_preset(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_cli_in_process(capsys, monkeypatch, "pretrain", "--list-sizes")
    assert result.returncode == 0, result.stderr
    for name in PRESETS:
        assert name in result.stdout
    assert "FLOPs/token" in result.stdout


@pytest.mark.parametrize("name", list(PRESETS))
def test_the_parameter_count_is_the_models_own(name: str) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = PRESETS[name]
    if parameters(shape, 512) > 20_000_000:  # the formula is per layer: small ones suffice
        shape = ModelShape(2, shape.heads, shape.dim, 16, shape.kv_heads, shape.ffn)
    settings = LlamaConfig(
        vocab_size=512,
        hidden_size=shape.dim,
        intermediate_size=shape.ffn_dim,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv,
        tie_word_embeddings=True,
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(settings)
    assert sum(p.numel() for p in model.parameters()) == parameters(shape, 512)
    assert flops_per_token(shape, 512) > 6 * parameters(shape, 512) - 6 * 512 * shape.dim


def test_the_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    config = PretrainConfig(learning_rate=1e-3, min_lr=1e-4, warmup_steps=100).validate()
    schedule = LearningRate(config, total_steps=2000)
    assert schedule(0) == pytest.approx(1 / 101)
    assert schedule(99) == pytest.approx(100 / 101)
    assert schedule(100) == pytest.approx(1.0)
    assert schedule(1050) == pytest.approx(0.55)  # half-way down the cosine: (1 + 0.1) / 2
    assert schedule(2000) == pytest.approx(0.1)
    assert schedule(5000) == pytest.approx(0.1)


# ----------------------------------------------------------------------------- data parallel


def test_data_parallel_pretraining_on_two_cpu_processes_matches_one_process(
    corpus: Path, tmp_path: Path
) -> None:
    """Two gloo processes with one micro-batch each == one process accumulating two: the
    first process alone tokenizes; both draw the same windows and share them out."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file
    from tests.helpers import run_cli

    common = ["pretrain", "-d", str(corpus), "--tokenizer", "char", *TINY]
    common += ["--max-steps", "4", "--batch-size", "4", "--eval-every", "2", "--seed", "5"]
    env = {**os.environ, "COLUMNS": "200", "RAGTUNE_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
        "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "ragtune", *common, "--output", str(tmp_path / "ddp"),
    ]  # fmt: skip
    parallel = subprocess.run(launch, capture_output=True, text=True, timeout=300, env=env)
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    single = run_cli(*common, "--grad-accum", "2", "--output", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr[-3000:]
    a = load_file(str(tmp_path / "ddp" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max() < 1e-4, key
    ddp = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert ddp["val_loss"] == pytest.approx(one["val_loss"], rel=1e-4)
    assert ddp["tokens"] == one["tokens"] == 4 * 2 * 4 * 32


def test_pretraining_on_the_documents_of_an_index(corpus: Path, tmp_path: Path) -> None:
    from ragtune import Document, VectorStoreIndex

    text = corpus.read_text(encoding="utf-8")
    pages = [text[start : start + 4000] for start in range(0, 40_000, 4000)]
    documents = [
        Document(text=page, metadata={"url": f"https://example.org/{number}"})
        for number, page in enumerate(pages)
    ]
    VectorStoreIndex.from_documents(documents, persist_dir=tmp_path / "index")
    config = tiny_config(corpus, tmp_path / "run", max_steps=5, eval_every=5)
    config.data, config.from_index = None, str(tmp_path / "index")
    outcome = pretrain(config.validate())
    assert outcome.summary["documents"] == len(pages)
    # The chunks joined back into the pages, each overlap between chunks once.
    tokens = outcome.summary["train_tokens"] + outcome.summary["val_tokens"]
    assert 40_000 <= tokens <= 40_000 + 40 * len(pages)  # characters, end-of-text tokens, seams


def test_a_file_too_big_to_hold_streams_in_pieces_of_one_document(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ragtune.train.data.records as records

    monkeypatch.setattr(records, "STREAM_BYTES", 10_000)  # 12 pieces of the 120 KB text
    outcome = pretrain(tiny_config(corpus, tmp_path / "run", max_steps=2, eval_every=2))
    text = corpus.read_text(encoding="utf-8")
    assert outcome.summary["documents"] == 1  # one end-of-text, after the last piece
    tokens = outcome.summary["train_tokens"] + outcome.summary["val_tokens"]
    assert tokens == len(text) + 1  # ASCII: a token per character, and the end of text


def test_off_a_terminal_progress_is_plain_lines(
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAGTUNE_PROGRESS_INTERVAL", "0.05")
    result = run_cli_in_process(
        capsys, monkeypatch, "pretrain", "-d", str(corpus), "--tokenizer", "char", *TINY,
        "--max-steps", "30", "--eval-every", "30", "-o", str(tmp_path / "run"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Pretraining: ")]
    assert lines and all(" steps, " in line and "tok/s" in line for line in lines)
    assert "\x1b" not in result.stderr  # no escape sequences off a terminal
    assert "Pretrained" in result.stdout and "val loss" in result.stdout
