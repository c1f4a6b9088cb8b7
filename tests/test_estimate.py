"""`ragtune estimate`: the formulas on constructed inputs, the command line, and one real
check against a tiny fine-tuning run.

The real check compares what is exact (steps, tokens trained, parameter and optimizer-state
bytes) with what a run actually did and allocated, never wall time: timings on a shared
machine are not a unit test's business (the ±25% time / ±15% RSS acceptance lives in
bench/estimate_accuracy.py, figures in docs/benchmarks.md). Every CLI test prices a GPU
profile, so none needs the (cached, ~15 s) measurement of this machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers import run_cli_in_process
from tests.tiny_models import make_tiny_llama

from ragtune.errors import EstimateError
from ragtune.train.estimate import compute, hardware, memory, shapes
from ragtune.train.estimate.compute import Batch, Method
from ragtune.train.estimate.routes import Request, estimate
from ragtune.train.pretrain.sizes import PRESETS, flops_per_token, parameters

FACTS = [
    ("What colour is the sky on Zorg?", "The sky on Zorg is green."),
    ("Who founded Quillby?", "Quillby was founded by Ada Moss in 1911."),
    ("What does a flumph eat?", "A flumph eats blue moss."),
    ("How tall is Mount Bree?", "Mount Bree is 4,120 metres tall."),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-base"))


def alpaca(path: Path, copies: int = 3) -> Path:
    rows = [{"instruction": q, "input": "", "output": a} for q, a in FACTS * copies]
    path.write_text(json.dumps(rows))
    return path


# --- formulas -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PRESETS))
def test_pretraining_flops_are_the_pretrain_modules_per_token_figure(name: str) -> None:
    model = shapes.from_preset(name, 8192)
    tokens = 12 * model.shape.context
    batch = Batch(12, model.shape.context, tokens, tokens)
    assert model.parameters == parameters(PRESETS[name], 8192)
    exact = flops_per_token(PRESETS[name], 8192) * tokens
    assert compute.batch_flops(model, Method("pretrain"), batch) == exact


def test_lora_skips_the_frozen_weight_gradients_and_adds_its_adapters() -> None:
    model = shapes.from_dimensions(2, 64, 4, 2, 128, 32, 100)
    batch = Batch(1, 32, 32, 32)
    linear = 2 * (64 * 64 * 2 + 64 * 32 * 2 + 64 * 128 * 3 + 2 * 64)  # + the norms
    adapters = 2 * 8 * ((64 + 64) * 2 + (64 + 32) * 2 + (64 + 128) * 2 + (128 + 64))
    assert compute.lora_parameters(model, 8) == adapters
    attention = 6 * 2 * 2 * 64 * 32 * 32
    expected = 4 * linear * 32 + 4 * 64 * 100 * 32 + attention + 6 * adapters * 32
    assert compute.batch_flops(model, Method("lora", lora_r=8), batch) == expected


def test_memory_of_weights_gradients_and_adamw_states_is_bytes_per_parameter() -> None:
    model = shapes.from_preset("5m", 8192)
    batch = Batch(4, 512, 2048, 2048)
    full = memory.training_memory(model, Method("full"), batch)
    p = model.parameters
    assert (full.weights, full.gradients, full.optimizer) == (4 * p, 4 * p, 8 * p)
    lora = memory.training_memory(model, Method("lora", lora_r=8), batch)
    trainable = compute.lora_parameters(model, 8)
    assert lora.weights == 4 * p + 4 * trainable
    assert (lora.gradients, lora.optimizer) == (4 * trainable, 8 * trainable)
    checkpointed = memory.training_memory(model, Method("full", checkpointing=True), batch)
    assert checkpointed.activations < full.activations / 3
    qlora = memory.training_memory(
        model, Method("lora", lora_r=8, qlora=True), batch, value_bytes=2
    )
    linear = 6 * (256 * 256 * 4 + 256 * 704 * 3)  # 5m: 6 layers, 256 wide, ffn 704
    assert qlora.weights == pytest.approx(
        linear * 0.5157 + (p - linear) * 2 + 4 * trainable, rel=1e-3
    )


def test_a_bare_parameter_count_gets_a_shape_near_it() -> None:
    for count in (1.3e8, 7e9, 7e10):
        spec = shapes.from_parameters(count, 2048, 32000)
        assert spec.assumed
        assert 0.5 * count < spec.parameters < 1.6 * count, (count, spec)


def test_gpu_time_is_flops_over_peak_mfu_and_gpus_and_money_follows() -> None:
    h100 = hardware.hardware("h100", gpus=8, mfu=0.5)
    assert h100.price_per_hour == pytest.approx(8 * hardware.GPU_PROFILES["h100"].price_per_hour)
    model = shapes.from_preset("125m", 8192)
    batch = Batch(8, 1024, 8192, 8192)
    flops = compute.batch_flops(model, Method("pretrain"), batch)
    seconds = compute.batch_seconds(h100, model, Method("pretrain"), batch)
    assert seconds == pytest.approx(flops / (989e12 * 0.5 * 8))


def test_every_gpu_profile_is_dense_and_plausible() -> None:
    for profile in hardware.GPU_PROFILES.values():
        assert 50e12 <= profile.peak_flops <= 1000e12, profile  # dense, never "with sparsity"
        assert profile.memory_bytes >= 16 * 2**30 and profile.price_per_hour > 0


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"device": "tpu-v9"}, "unknown device"),
        ({"device": "l4", "gpus": 0}, "--gpus must be positive"),
        ({"device": "l4", "mfu": 1.5}, "--mfu"),
        ({"device": "l4", "price_per_hour": -1.0}, "--price-per-hour"),
        ({"device": "this", "gpus": 2}, "--gpus applies to a GPU"),
    ],
)
def test_bad_hardware_is_one_line(arguments: dict[str, object], fragment: str) -> None:
    with pytest.raises(EstimateError, match=fragment) as error:
        hardware.hardware(measure=False, **arguments)  # type: ignore[arg-type]
    assert "\n" not in str(error.value)


def test_a_cached_measurement_of_this_machine_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGTUNE_CACHE_DIR", str(tmp_path))
    calls = []
    machine = hardware.Machine(
        "cpu", 1, "t", {64: 1e10, 512: 5e10}, 1e10, 1e-9, 4e8, 5.0, 2**34, {"a": 1.0}, ""
    )

    def fake(threads: int) -> hardware.Machine:
        calls.append(threads)
        return machine

    monkeypatch.setattr(hardware, "_measure", fake)
    assert hardware.measure_this(1) == machine
    assert hardware.measure_this(1) == machine
    assert calls == [1]
    assert machine.matmul_rate(768, 64, 64) == 1e10
    assert 1e10 < machine.matmul_rate(768, 128, 256) < 5e10


# --- the real check: what a run did, against its estimate ------------------------------------


def test_the_plan_of_a_finetune_run_matches_what_the_run_did(tiny: Path, tmp_path: Path) -> None:
    """Steps, tokens trained and the trained parameters' bytes are exact, not estimates:
    the plan batches the data as the loop does, and AdamW's states are what it holds."""
    import torch

    from ragtune.train.config import build_config
    from ragtune.train.run import train

    data = alpaca(tmp_path / "data.json", copies=5)
    settings = {
        "base": str(tiny),
        "data": str(data),
        "output": str(tmp_path / "run"),
        "max_length": 64,
        "batch_size": 3,
        "epochs": 2.0,
        "eval_fraction": 0.1,
        "lora_r": 4,
        "learning_rate": 5e-3,
        "save_every": 1000,
    }
    outcome = train(build_config(None, settings), "sft")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    recipe = tmp_path / "recipe.yaml"
    keys = ("max_length", "batch_size", "epochs", "eval_fraction", "lora_r", "save_every")
    recipe.write_text("".join(f"{key}: {settings[key]}\n" for key in keys))
    result = estimate(Request("lora", [data], model=str(tiny), recipe=recipe, device="a10g"))
    assert result["steps"] == summary["steps"] == outcome.result.steps
    assert result["trained_tokens"] == summary["tokens"]
    assert result["data"]["train_examples"] == summary["train_examples"]

    # the run's model is gone: the same one rebuilt, its parameters and AdamW states counted
    from transformers import AutoModelForCausalLM

    from ragtune.train.config import TrainConfig
    from ragtune.train.models.trainable import add_lora

    base = AutoModelForCausalLM.from_pretrained(tiny)
    assert result["model"]["parameters"] == sum(p.numel() for p in base.parameters())
    peft = add_lora(base, TrainConfig(lora_r=4))
    trainable = [p for p in peft.parameters() if p.requires_grad]
    assert result["model"]["trainable_parameters"] == sum(p.numel() for p in trainable)
    optimizer = torch.optim.AdamW(trainable)
    sum(p.sum() for p in trainable).backward()
    optimizer.step()
    states = sum(
        t.numel() * t.element_size()
        for state in optimizer.state.values()
        for t in state.values()
        if t.dim() > 0
    )
    assert result["memory_bytes"]["optimizer"] == states


# --- the command line ---------------------------------------------------------------------


def test_cli_prices_pretraining_on_a_gpu_profile_as_a_table_and_as_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("estimate", "pretrain", "--size", "125m", "--tokens", "2500000000", "--device", "h100")
    shown = run_cli_in_process(capsys, monkeypatch, *args, "--gpus", "8")
    assert shown.returncode == 0, shown.stderr
    for fragment in ("wall time", "Chinchilla", "memory: optimizer", "money", "H100"):
        assert fragment in shown.stdout, shown.stdout
    done = run_cli_in_process(capsys, monkeypatch, *args, "--json", "--price-per-hour", "10")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["fits"] is True
    assert result["chinchilla_tokens"] == 20 * result["model"]["parameters"]
    assert result["money"] == pytest.approx(10 * result["seconds"]["total"] / 3600)
    assert result["steps"] == 2000  # the pretraining default, as `ragtune pretrain` runs


def test_cli_prices_a_model_given_by_parameter_count(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    done = run_cli_in_process(
        capsys,
        monkeypatch,
        "estimate",
        "pretrain",
        "--params",
        "7e9",
        "--tokens",
        "1000000000000",
        "--context",
        "2048",
        "--batch-size",
        "1",
        "--device",
        "l4",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["model"]["shape_assumed"] is True
    assert result["fits"] is False  # 7B parameters with AdamW: ~112 GB, on a 24 GB L4


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("estimate", "distill", "--tokens", "5"), "unknown route"),
        (("estimate", "pretrain", "/no/such/file.txt", "--device", "l4"), "does not exist"),
        (("estimate", "pretrain", "--tokens", "100", "--device", "l4", "--gpus", "-2"), "--gpus"),
        (("estimate", "pretrain", "--tokens", "100", "--device", "v100x"), "unknown device"),
        (("estimate", "pretrain", "--tokens", "-5", "--device", "l4"), "--tokens"),
        (("estimate", "pretrain", "--device", "l4"), "no data"),
        (("estimate", "pretrain", "--tokens", "9", "--size", "3m", "--device", "l4"), "size"),
        (("estimate", "lora", "--device", "l4"), "no data"),
        (("estimate", "rag", "--device", "l4"), "no data"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_one(
    args: tuple[str, ...],
    fragment: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done = run_cli_in_process(capsys, monkeypatch, *args)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def test_a_model_directory_without_config_json_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = alpaca(tmp_path / "data.json")
    (tmp_path / "empty").mkdir()
    done = run_cli_in_process(
        capsys,
        monkeypatch,
        "estimate",
        "lora",
        str(data),
        "-m",
        str(tmp_path / "empty"),
        "--device",
        "l4",
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: model {tmp_path / 'empty'} has no config.json"


def test_a_usage_error_exits_two_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    done = run_cli_in_process(capsys, monkeypatch, "estimate", "pretrain", "--gpus", "many")
    assert done.returncode == 2
    assert done.stderr.startswith("error: ")
    assert list(tmp_path.iterdir()) == []
