"""Fine-tuning and DPO on a tiny random Llama: formats, masking, EOS, resume, data parallel.

The model (two layers, 64 wide, SmolLM2's tokenizer and chat template) trains in a
second or two per run, so each test runs the real loop end to end: records parsed,
encoded through the chat template, LoRA or full weights updated, checkpoints written.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers import FINETUNE_FACTS as FACTS
from tests.helpers import assert_one_line_error, finetune_settings, run_cli, small_tmpfs
from tests.tiny_models import make_tiny_llama, smollm2_tokenizer

pytest.importorskip("peft", reason="fine-tuning needs the train extra (peft)")
pytest.importorskip("accelerate", reason="fine-tuning needs the train extra (accelerate)")

from ragtune.errors import DatasetError, TrainingError  # noqa: E402
from ragtune.train.config import build_config  # noqa: E402
from ragtune.train.data.encode import (  # noqa: E402
    IGNORE,
    encode_chat,
    encode_records,
    pack,
    prepare_tokenizer,
)
from ragtune.train.data.records import ChatRecord, Message, TextRecord  # noqa: E402
from ragtune.train.run import train  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return prepare_tokenizer(smollm2_tokenizer())


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def dataset(tmp_path: Path, kind: str, copies: int = 3) -> Path:
    """The same facts in each supported format."""
    facts = FACTS * copies
    if kind == "alpaca":
        path = tmp_path / "alpaca.json"
        path.write_text(
            json.dumps([{"instruction": q, "input": "", "output": a} for q, a in facts])
        )
        return path
    if kind == "sharegpt":
        rows = [
            {"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}
            for q, a in facts
        ]
        return write_jsonl(tmp_path / "sharegpt.jsonl", rows)
    if kind == "messages":
        rows = [
            {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in facts
        ]
        return write_jsonl(tmp_path / "messages.jsonl", rows)
    path = tmp_path / "notes.txt"
    path.write_text("\n\n".join(a for _, a in facts), encoding="utf-8")
    return path


# --- encoding -----------------------------------------------------------------------------


def trained_text(tokenizer: object, ids: list[int], labels: list[int]) -> str:
    return tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label != IGNORE])  # type: ignore[attr-defined]


def test_prompt_tokens_carry_no_loss(tokenizer: object) -> None:
    messages = (
        Message("system", "Be brief."),
        Message("user", "Who keeps it?"),
        Message("assistant", "Mara Quill."),
    )
    example = encode_chat(tokenizer, messages)
    assert len(example.input_ids) == len(example.labels)
    # Only the reply and its end-of-turn marker are trained.
    assert (
        trained_text(tokenizer, example.input_ids, example.labels).strip()
        == "Mara Quill.<|im_end|>"
    )
    full = tokenizer.decode(example.input_ids)  # type: ignore[attr-defined]
    assert "Be brief." in full and "Who keeps it?" in full
    prompt_positions = [i for i, label in enumerate(example.labels) if label == IGNORE]
    assert len(prompt_positions) > 10


def test_every_user_turn_of_a_conversation_is_masked(tokenizer: object) -> None:
    messages = (
        Message("user", "First question?"),
        Message("assistant", "First answer."),
        Message("user", "Second question?"),
        Message("assistant", "Second answer."),
    )
    example = encode_chat(tokenizer, messages)
    trained = trained_text(tokenizer, example.input_ids, example.labels)
    assert "First answer." in trained and "Second answer." in trained
    assert "question" not in trained
    # The tokens are the ones the template gives the whole conversation at once.
    whole = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        [{"role": m.role, "content": m.content} for m in messages], tokenize=False
    )
    assert tokenizer.decode(example.input_ids) == whole  # type: ignore[attr-defined]


def test_train_on_prompt_trains_every_token(tokenizer: object) -> None:
    messages = (Message("user", "Hi?"), Message("assistant", "Hello."))
    example = encode_chat(tokenizer, messages, mask_prompt=False)
    assert example.labels == example.input_ids


def test_the_reply_ends_in_a_trained_eos_so_the_model_stops(tokenizer: object) -> None:
    example = encode_chat(tokenizer, (Message("user", "Hi?"), Message("assistant", "Hello.")))
    eos = tokenizer.eos_token_id  # type: ignore[attr-defined]
    assert eos in [label for label in example.labels if label != IGNORE]


def test_a_template_without_an_end_token_gets_eos_appended(tokenizer: object) -> None:
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = (  # type: ignore[attr-defined]
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    example = encode_chat(plain, (Message("user", "Hi?"), Message("assistant", "Hello.")))
    assert example.input_ids[-1] == plain.eos_token_id  # type: ignore[attr-defined]
    assert example.labels[-1] == plain.eos_token_id  # type: ignore[attr-defined]


def test_text_records_are_trained_whole_in_full_length_blocks(tokenizer: object) -> None:
    records = [TextRecord("word " * 150, "a.txt:1"), TextRecord("other " * 40, "b.txt:1")]
    examples, report = encode_records(tokenizer, records, max_length=64)
    assert all(e.labels == e.input_ids for e in examples)
    assert all(len(e.input_ids) == 64 for e in examples[:-1])
    assert report.tokens == sum(len(e.input_ids) for e in examples)


def test_overlong_records_are_truncated_skipped_or_rejected(tokenizer: object) -> None:
    long = ChatRecord(
        (Message("user", "Tell me."), Message("assistant", "word " * 200)), "data.jsonl:7"
    )
    short = ChatRecord((Message("user", "Hi?"), Message("assistant", "Hello.")), "data.jsonl:8")
    examples, report = encode_records(tokenizer, [long, short], max_length=64)
    assert report.truncated == 1 and len(examples) == 2 and len(examples[0].input_ids) == 64
    examples, report = encode_records(tokenizer, [long, short], max_length=64, overlong="skip")
    assert report.skipped == 1 and len(examples) == 1
    with pytest.raises(DatasetError) as error:
        encode_records(tokenizer, [long, short], max_length=64, overlong="error")
    assert "data.jsonl:7" in str(error.value) and "max_length 64" in str(error.value)


def test_packing_joins_examples_and_keeps_their_masks(tokenizer: object) -> None:
    records = [
        ChatRecord((Message("user", q), Message("assistant", a)), f"f:{i}")
        for i, (q, a) in enumerate(FACTS)
    ]
    examples, _ = encode_records(tokenizer, records, max_length=512)
    packed = pack(examples, 512)
    assert len(packed) < len(examples)
    assert sum(len(e.input_ids) for e in packed) == sum(len(e.input_ids) for e in examples)
    assert sum(e.trained_tokens for e in packed) == sum(e.trained_tokens for e in examples)


# --- training -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["alpaca", "sharegpt", "messages", "text"])
def test_every_dataset_format_trains(kind: str, tiny: Path, tmp_path: Path) -> None:
    data = dataset(tmp_path, kind)
    outcome = train(build_config(None, finetune_settings(tiny, data, tmp_path / "run")), "sft")
    losses = [h["loss"] for h in outcome.result.history if "loss" in h]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]  # 5e-3 on four facts: the loss falls within four steps
    assert (outcome.saved / "adapter_model.safetensors").is_file()
    assert (tmp_path / "run" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resumed_run_continues_the_interrupted_loss_curve(tiny: Path, tmp_path: Path) -> None:
    data = dataset(tmp_path, "alpaca", copies=4)
    values = finetune_settings(
        tiny, data, tmp_path / "whole", max_steps=8, save_every=3, eval_fraction=0.0
    )
    whole = train(build_config(None, values), "sft").result.history

    class Interrupted(Exception):
        pass

    def stop_at_five(record: dict[str, object]) -> None:
        if record["step"] == 5:
            raise Interrupted

    values["output"] = str(tmp_path / "broken")
    with pytest.raises(Interrupted):
        train(build_config(None, values), "sft", on_step=stop_at_five)
    assert (tmp_path / "broken" / "checkpoints" / "latest").read_text().strip() == "step-00000003"
    resumed = train(build_config(None, values), "sft", resume=True)
    assert resumed.result.resumed_from == 3
    assert [h["step"] for h in resumed.result.history] == list(range(1, 9))
    for expected, got in zip(whole, resumed.result.history, strict=True):
        assert got["loss"] == pytest.approx(expected["loss"], rel=1e-4), (expected, got)
        assert got["lr"] == pytest.approx(expected["lr"])
    written = [
        json.loads(line)
        for line in (tmp_path / "broken" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in written] == list(range(1, 9))


def test_full_fine_tuning_saves_a_model_the_transformers_backend_loads(
    tiny: Path, tmp_path: Path
) -> None:
    from ragtune.llm.transformers_backend import TransformersLLM

    data = dataset(tmp_path, "messages")
    outcome = train(
        build_config(
            None,
            finetune_settings(tiny, data, tmp_path / "full", method="full", learning_rate=1e-3),
        ),
        "sft",
    )
    assert (outcome.saved / "config.json").is_file()
    answer = TransformersLLM(outcome.saved).chat(
        [{"role": "user", "content": "Who keeps the lighthouse?"}], max_tokens=8
    )
    assert isinstance(answer, str)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_dpo_margin_rises_on_its_training_pairs(method: str, tiny: Path, tmp_path: Path) -> None:
    pairs = [{"prompt": q, "chosen": a, "rejected": "I do not know, sorry."} for q, a in FACTS] * 2
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    rate = 2e-3 if method == "lora" else 5e-4
    values = finetune_settings(
        tiny,
        data,
        tmp_path / "dpo",
        max_steps=10,
        learning_rate=rate,
        save_every=100,
        method=method,
    )
    outcome = train(build_config(None, values), "dpo")
    margins = [h["margin"] for h in outcome.result.history if "margin" in h]
    assert margins[0] == pytest.approx(0.0, abs=1e-5)  # the first step's policy is the reference
    assert margins[-1] > 0.5
    assert sum(margins[-3:]) / 3 > sum(margins[:3]) / 3
    assert outcome.result.history[-1]["accuracy"] == 1.0


def test_data_parallel_training_on_two_cpu_processes_matches_one_process(
    tiny: Path, tmp_path: Path
) -> None:
    """Two gloo processes with one micro-batch each == one process accumulating two."""
    from safetensors.torch import load_file

    data = dataset(tmp_path, "alpaca", copies=4)
    common = [
        "finetune",
        "--base",
        str(tiny),
        "--data",
        str(data),
        "--max-steps",
        "3",
        "--batch-size",
        "2",
        "--max-length",
        "96",
        "--lr",
        "5e-3",
        "--eval-fraction",
        "0",
        "--seed",
        "3",
        "--save-every",
        "100",
    ]
    recipe = tmp_path / "nodrop.yaml"
    recipe.write_text("lora_dropout: 0.0\n")
    env = {**os.environ, "COLUMNS": "200", "RAGTUNE_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "ragtune",
        *common,
        "--config",
        str(recipe),
        "--output",
        str(tmp_path / "ddp"),
    ]
    parallel = subprocess.run(launch, capture_output=True, text=True, timeout=300, env=env)
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    single = run_cli(
        *common, "--config", str(recipe), "--grad-accum", "2", "--output", str(tmp_path / "one")
    )
    assert single.returncode == 0, single.stderr[-3000:]
    a = load_file(str(tmp_path / "ddp" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "one" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max() < 1e-4, key
    ddp_losses = [
        json.loads(x)["loss"] for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    ]
    one_losses = [
        json.loads(x)["loss"] for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()
    ]
    assert ddp_losses == pytest.approx(one_losses, rel=1e-4)


def test_from_index_trains_on_the_documents_of_an_index(tiny: Path, tmp_path: Path) -> None:
    from ragtune import Document, VectorStoreIndex

    docs = [
        Document(text=f"{q} {a}", metadata={"url": f"https://example.org/{i}"})
        for i, (q, a) in enumerate(FACTS)
    ]
    VectorStoreIndex.from_documents(docs, persist_dir=tmp_path / "index")
    values = finetune_settings(tiny, tmp_path / "none", tmp_path / "run", max_length=32)
    values["data"] = None
    values["from_index"] = str(tmp_path / "index")
    outcome = train(build_config(None, values), "sft")
    assert outcome.encoding.records == len(FACTS)
    assert outcome.result.tokens > 0


# --- the command line ---------------------------------------------------------------------


def test_cli_finetune_then_ask_the_tuned_model_without_an_index(tiny: Path, tmp_path: Path) -> None:
    data = dataset(tmp_path, "sharegpt")
    result = run_cli(
        "finetune",
        "--base",
        str(tiny),
        "--data",
        str(data),
        "--output",
        str(tmp_path / "run"),
        "--max-steps",
        "3",
        "--batch-size",
        "2",
        "--max-length",
        "96",
        "--eval-fraction",
        "0.25",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for fragment in ("tokens/s", "peak memory", "eval loss", "loss.png"):
        assert fragment in result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["tokens_per_second"] > 0 and summary["peak_rss_mb"] > 0
    adapter = tmp_path / "run" / "adapter"
    assert f"--llm 'hf:{adapter}'" in result.stderr  # the adapter alone: it names its base
    asked = run_cli("ask", "--llm", f"hf:{adapter}", "Who keeps the lighthouse?")
    assert asked.returncode == 0, asked.stderr[-3000:]
    assert asked.stdout.strip()
    assert "without sources" in asked.stderr


def test_every_checked_in_recipe_is_valid() -> None:
    """Fine-tuning recipes; the pretraining ones (pretrain-*.yaml) in test_pretrain.py."""
    recipes = sorted((Path(__file__).parent.parent / "examples" / "recipes").glob("*.yaml"))
    recipes = [recipe for recipe in recipes if not recipe.name.startswith("pretrain-")]
    assert len(recipes) >= 3
    for recipe in recipes:
        build_config(recipe, {})


def bad(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_bad_training_input_is_one_line_and_exit_one(tiny: Path, tmp_path: Path) -> None:
    good = json.dumps(
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    )
    malformed = bad(tmp_path, "broken.jsonl", f'{good}\n{good}\n{{"messages": [\n')
    base = ["finetune", "--base", str(tiny), "--output", str(tmp_path / "out")]
    assert_one_line_error(run_cli(*base, "--data", str(malformed)), "broken.jsonl:3")
    assert_one_line_error(
        run_cli(*base, "--data", str(bad(tmp_path, "empty.jsonl", ""))), "empty.jsonl"
    )
    long_reply = json.dumps(
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "word " * 300},
            ]
        }
    )
    overlong = bad(tmp_path, "long.jsonl", f"{good}\n{long_reply}\n")
    assert_one_line_error(
        run_cli(*base, "--data", str(overlong), "--max-length", "64", "--overlong", "error"),
        "long.jsonl:2",
        "max_length 64",
    )
    missing = [
        "finetune",
        "--base",
        str(tmp_path / "no-such-model"),
        "--data",
        str(overlong),
        "-o",
        str(tmp_path / "o2"),
    ]
    assert_one_line_error(run_cli(*missing), "no-such-model")
    recipe = bad(tmp_path, "typo.yaml", "learnig_rate: 0.1\n")
    assert_one_line_error(
        run_cli(*base, "--data", str(overlong), "--config", str(recipe)), "learnig_rate"
    )
    assert_one_line_error(
        run_cli(*base, "--data", str(overlong), "--batch-size", "0"), "batch_size"
    )
    assert_one_line_error(run_cli(*base, "--data", str(overlong), "--resume"), "nothing to resume")
    assert not (tmp_path / "out" / "adapter").exists()


def test_a_finished_run_is_never_overwritten_by_accident(tiny: Path, tmp_path: Path) -> None:
    data = dataset(tmp_path, "alpaca")
    values = finetune_settings(tiny, data, tmp_path / "run", max_steps=2)
    train(build_config(None, values), "sft")
    before = (tmp_path / "run" / "adapter" / "adapter_model.safetensors").read_bytes()
    with pytest.raises(TrainingError, match="already holds a training run"):
        train(build_config(None, values), "sft")
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").read_bytes() == before


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: room for a few checkpoints of the tiny model, then full."""
    with small_tmpfs(tmp_path / "disk", "2m") as where:
        yield where


def test_a_full_disk_while_saving_leaves_the_previous_checkpoint_as_latest(
    tiny: Path, tmp_path: Path, small_disk: Path
) -> None:
    from ragtune.train.loop import checkpoints

    data = dataset(tmp_path, "alpaca", copies=4)
    output = small_disk / "run"
    values = finetune_settings(tiny, data, output, max_steps=40, save_every=1, keep_checkpoints=100)
    with pytest.raises(TrainingError) as error:
        train(build_config(None, values), "sft")
    message = str(error.value)
    assert "disk full" in message and "\n" not in message
    latest = checkpoints.load_latest(output)
    assert latest is not None and f"still {latest.path.name}" in message
    for name in ("trainable.safetensors", "optimizer.pt", "scheduler.pt", "state.json"):
        assert (latest.path / name).stat().st_size > 0
    assert not list(checkpoints.checkpoint_dir(output).glob(".step-*"))  # no half-written debris
    # Make room and resume: the run finishes from the checkpoint that survived.
    grown = subprocess.run(
        ["mount", "-o", "remount,size=64m", str(small_disk)], capture_output=True
    )
    assert grown.returncode == 0, grown.stderr
    values["max_steps"] = latest.step + 1
    values["save_every"] = 100
    resumed = train(build_config(None, values), "sft", resume=True)
    assert resumed.result.resumed_from == latest.step


def test_python_api_trains_and_the_adapter_answers_over_an_index(
    tiny: Path, tmp_path: Path
) -> None:
    from ragtune import Document, VectorStoreIndex
    from ragtune.train import finetune

    run = finetune(
        dataset(tmp_path, "messages"),
        output=tmp_path / "run",
        base=str(tiny),
        max_steps=2,
        batch_size=2,
        max_length=96,
        eval_fraction=0.0,
    )
    assert run.saved == tmp_path / "run" / "adapter"
    docs = [
        Document(text=a, metadata={"url": f"https://example.org/{i}"})
        for i, (_, a) in enumerate(FACTS)
    ]
    index = VectorStoreIndex.from_documents(docs)
    engine = index.as_query_engine(llm=f"hf:{run.base}#adapter={run.saved}", min_similarity=0.0)
    response = engine.query("Who keeps the lighthouse?")
    assert response.source_nodes and isinstance(response.response, str)
    with pytest.raises(TrainingError, match="unknown setting 'learnig_rate'"):
        finetune(dataset(tmp_path, "messages"), output=tmp_path / "x", learnig_rate=0.1)


@pytest.mark.parametrize("frozen", [True, False])
def test_label_logprobs_and_gradients_equal_the_full_logits_computation(frozen: bool) -> None:
    """The chunked output head (fused for a frozen head) changes memory, not the math."""
    import torch

    from ragtune.train.models import trainable as training_model

    torch.manual_seed(0)
    head = torch.nn.Linear(32, 500, bias=False)
    head.weight.requires_grad_(not frozen)
    rows = training_model.HEAD_CHUNK * 2 + 7  # several chunks and a ragged last one
    hidden = torch.randn(rows, 32, requires_grad=True)
    targets = torch.randint(0, 500, (rows,))
    weights = torch.randn(rows)

    got = training_model._label_logprobs(head, hidden, targets)
    (got * weights).sum().backward()
    got_grad = hidden.grad.clone()  # type: ignore[union-attr]
    hidden.grad = None
    expected = torch.log_softmax(head(hidden), dim=-1).gather(1, targets[:, None]).squeeze(1)
    (expected * weights).sum().backward()
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(got_grad, hidden.grad, atol=1e-5)  # type: ignore[arg-type]
    with torch.no_grad():
        assert torch.allclose(
            training_model._label_logprobs(head, hidden, targets), expected, atol=1e-5
        )
