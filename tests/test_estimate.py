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


# --- a model known by its shape or size only (no directory, no tokenizer) ------------------


def test_public_shapes_have_their_published_parameter_counts() -> None:
    published = {  # the model cards' and config.json's totals
        "7b": 6_738_415_616,  # Llama-2-7B
        "13b": 13_015_864_320,  # Llama-2-13B
        "8b": 8_030_261_248,  # Llama-3-8B
        "70b": 70_553_706_496,  # Llama-3-70B
        "qwen2.5-0.5b": 494_032_768,
        "smollm2-135m": 134_515_008,
    }
    for name, count in published.items():
        assert shapes.from_public(name).parameters == pytest.approx(count, rel=1e-3), name


def test_a_bare_parameter_count_takes_llama_2_proportions() -> None:
    """Llama-2's rule (width 128 a layer, 128-wide heads, feed-forward 8/3 rounded to 256)
    gives Llama-2-7B and -13B exactly when asked for 7e9 and 13e9."""
    for count, name in ((7e9, "llama2-7b"), (13e9, "llama2-13b")):
        spec = shapes.from_parameters(count, 4096, None, tied=False)
        public = shapes.from_public(name)
        assert spec.shape.as_dict(spec.vocab) == public.shape.as_dict(public.vocab)
        assert spec.parameters == public.parameters


def test_finetuning_priced_from_a_parameter_count_without_a_model_or_data() -> None:
    request = Request("lora", params=7e9, tokens=2_000_000, device="a10g", price_per_hour=2.0)
    result = estimate(request)
    assert result["model"]["shape_assumed"] is True
    assert result["model"]["shape"]["layers"] == 32 and result["model"]["shape"]["dim"] == 4096
    # 2M tokens as 1,024-token examples (max_length), 5% held out, batches of 4
    examples = -(-2_000_000 // 1024)
    held_out = int(examples * 0.05)
    assert result["data"]["examples"] == examples
    assert result["steps"] == -(-(examples - held_out) // 4)
    assert result["trained_tokens"] == (examples - held_out) * 1024
    assert result["money"] == pytest.approx(2.0 * result["seconds"]["total"] / 3600)
    # the frozen base is never written to a checkpoint: adapters and AdamW moments only
    trainable = result["model"]["trainable_parameters"]
    assert result["seconds"]["checkpoints"] == pytest.approx(
        4 * 3 * 4 * trainable / 300e6  # steps 465: checkpoints at 100, 200, 300, 400
    )
    full = estimate(Request("full", params=7e9, tokens=2_000_000, device="a10g"))
    assert full["flops"] > result["flops"]
    assert full["memory_bytes"]["optimizer"] == 8 * full["model"]["parameters"]
    assert full["fits"] is False and result["memory_bytes"]["weights"] < 14.5e9


def test_a_token_plan_counts_grad_accumulation_and_the_short_last_batch() -> None:
    from ragtune.train.config import TrainConfig
    from ragtune.train.estimate.training import finetune_token_plan

    model = shapes.from_public("smollm2-135m", 128)
    config = TrainConfig(max_length=128, batch_size=4, grad_accum=2, eval_fraction=0.0)
    plan = finetune_token_plan(config, model, 10 * 128)  # 10 examples: 4 + 4 + 2
    assert plan.steps == 2
    # step 1: two full batches; step 2: the short one, then wrapped to the first
    assert plan.batches == {Batch(4, 128, 512, 512): 3, Batch(2, 128, 256, 256): 1}
    assert plan.eval_batches == [] and plan.evaluations == 0


def test_a_public_shape_names_the_model_of_a_finetune_or_pretrain_estimate() -> None:
    lora = estimate(Request("lora", model="8b", tokens=100_000, device="h100"))
    assert lora["model"]["name"] == "llama3-8b" and lora["model"]["shape"]["kv_heads"] == 8
    pretrain = estimate(Request("pretrain", model="qwen2.5-0.5b", tokens=10**9, device="h100"))
    assert pretrain["model"]["parameters"] == shapes.from_public("qwen2.5-0.5b").parameters


def test_data_without_a_tokenizer_to_count_it_is_refused(tmp_path: Path) -> None:
    data = alpaca(tmp_path / "data.json")
    with pytest.raises(EstimateError, match="--tokens"):
        estimate(Request("lora", [data], params=7e9, device="a10g"))
    with pytest.raises(EstimateError, match="not both"):
        estimate(Request("lora", model="7b", params=7e9, tokens=10, device="a10g"))


def test_cli_prices_lora_from_a_parameter_count_and_tokens_in_e_notation(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("estimate", "lora", "--params", "7e9", "--tokens", "2e6", "--device", "a10g")
    done = run_cli_in_process(capsys, monkeypatch, *args, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["data"]["tokens"] == 2_000_000
    shown = run_cli_in_process(capsys, monkeypatch, *args)
    assert shown.returncode == 0 and "shape assumed" in shown.stdout
    bad = run_cli_in_process(capsys, monkeypatch, *args[:-2], "--tokens", "inf")
    assert bad.returncode == 1 and "--tokens" in bad.stderr


# --- the terms of this machine's model, on a constructed machine -----------------------------


def machine(**figures: object) -> hardware.Machine:
    """A measured machine, its figures given (round numbers, so results are exact)."""
    values: dict[str, object] = {
        "cpu": "test",
        "threads": 1,
        "torch": "t",
        "matmul": {64: 1e11, 2048: 1e11},
        "bandwidth": 1e10,
        "element_seconds": 1e-9,
        "baseline_rss": 4e8,
        "startup_seconds": 3.0,
        "memory_bytes": 2**34,
        "probe": dict.fromkeys(
            ("step_fixed", "layer_full", "lora_fixed", "layer_lora", "eval_fixed", "layer_eval"),
            0.0,
        ),
    }
    values.update(figures)
    return hardware.Machine(**values)  # type: ignore[arg-type]


def test_the_matmul_rate_at_few_rows_is_measured_not_assumed() -> None:
    flat = machine(matmul={64: 1e11}, matmul_few={64: 1e11})
    assert flat.matmul_rate(128, 64, 64) == pytest.approx(1e11)  # measured flat: stays flat
    falling = machine(matmul={64: 1e11}, matmul_few={64: 2.5e10})
    rows = hardware.FEW_ROWS, 128, 256, hardware.ROWS
    rates = [falling.matmul_rate(r, 64, 64) for r in rows]
    assert rates[0] == pytest.approx(2.5e10) and rates[-1] == pytest.approx(1e11)
    assert rates == sorted(rates)  # between the two counts measured: log-linear, rising
    assert falling.matmul_rate(hardware.FEW_ROWS // 2, 64, 64) == pytest.approx(1.25e10)


def test_lora_dropout_costs_its_measured_price_on_every_adapted_input() -> None:
    model = shapes.from_dimensions(2, 64, 4, 4, 128, 32, 100)
    where = hardware.Hardware("this", 1, None, None, machine=machine(dropout_seconds=1e-8))
    batch = Batch(2, 32, 64, 64)
    with_dropout = compute.batch_seconds(where, model, Method("lora", lora_dropout=0.05), batch)
    without = compute.batch_seconds(where, model, Method("lora", lora_dropout=0.0), batch)
    inputs = 2 * (64 * 6 + 128)  # layers x (q, k, v, o, gate, up: 64 wide; down: 128)
    assert with_dropout - without == pytest.approx(64 * inputs * 1e-8)


def test_logits_cost_their_measured_price_per_pass() -> None:
    model = shapes.from_dimensions(1, 64, 4, 4, 128, 32, 1000)
    where = hardware.Hardware("this", 1, None, None, machine=machine(logit_seconds=1e-8))
    cheap = hardware.Hardware("this", 1, None, None, machine=machine(logit_seconds=0.0))
    batch = Batch(1, 32, 10, 32)
    for name, passes in (("lora", 1.0), ("pretrain", 1.0)):
        extra = compute.batch_seconds(where, model, Method(name), batch) - compute.batch_seconds(
            cheap, model, Method(name), batch
        )
        unmeasured = 4 * 1e-9  # without a measurement: 4 element-wise passes
        assert extra == pytest.approx(10 * 1000 * (1e-8 - unmeasured) * passes)
    full = compute.batch_seconds(where, model, Method("full"), batch)
    lora = compute.batch_seconds(where, model, Method("lora"), batch)
    assert full > lora  # a trained head recomputes its chunk: 1.5 passes, and its gradients


def test_a_large_trained_vocabulary_pays_fresh_pages_for_its_dense_gradients() -> None:
    fast = machine(fresh_page_seconds=0.0)
    faulting = machine(fresh_page_seconds=1e-6)
    big = shapes.from_dimensions(1, 576, 9, 3, 1536, 32, 49152)  # SmolLM2's vocabulary
    small = shapes.from_dimensions(1, 256, 4, 4, 704, 32, 2048)  # a 2 MB table
    batch = Batch(2, 128, 128, 256)
    table = 49152 * 576 * 4
    extra = compute.dense_gradient_seconds(faulting, big, Method("full"), batch)
    extra -= compute.dense_gradient_seconds(fast, big, Method("full"), batch)
    assert extra == pytest.approx(2 * table / 4096 * 1e-6)  # the embedding's and one chunk's
    assert compute.dense_gradient_seconds(faulting, small, Method("full"), batch) == (
        compute.dense_gradient_seconds(fast, small, Method("full"), batch)
    )
    where = hardware.Hardware("this", 1, None, None, machine=faulting)
    with_pages = compute.batch_seconds(where, big, Method("lora"), batch)
    assert with_pages == compute.batch_seconds(
        hardware.Hardware("this", 1, None, None, machine=fast), big, Method("lora"), batch
    )  # a frozen vocabulary has no gradient


def test_bpe_tokens_are_counted_by_the_vocabularys_measured_characters_a_token() -> None:
    from ragtune.train.estimate.training import chars_per_bpe_token

    assert chars_per_bpe_token(2048) == pytest.approx(2.87)
    assert chars_per_bpe_token(8192) == pytest.approx(3.3)
    assert chars_per_bpe_token(256) == 1.0 and chars_per_bpe_token(65536) == 3.3
    counts = [chars_per_bpe_token(v) for v in (300, 1024, 2048, 4096, 8192)]
    assert counts == sorted(counts)


def test_pretraining_memory_starts_from_its_own_process_and_what_tokenizing_kept(
    tmp_path: Path,
) -> None:
    from ragtune.train.config import build_settings
    from ragtune.train.estimate.training import (
        BPE_TRAINING_BYTES_PER_CHAR,
        ENCODING_BYTES_PER_CHAR,
        ENCODING_BYTES_PER_TOKEN,
        finetune_token_plan,
        pretrain_plan,
        price,
    )
    from ragtune.train.pretrain.config import PretrainConfig

    text = tmp_path / "corpus.txt"
    text.write_text("to be or not to be, that is the question.\n" * 500)
    chars = len(text.read_text())
    where = hardware.Hardware("this", 1, None, None, machine=machine(pretrain_rss=3e8))
    settings = {"data": str(text), "tokenizer": "char", "size": "1m", "max_steps": 2}
    char = pretrain_plan(build_settings(None, settings, PretrainConfig), None, None)
    assert char.host_bytes == (ENCODING_BYTES_PER_CHAR + ENCODING_BYTES_PER_TOKEN) * chars
    assert price(char, where).memory.process == 3e8 + char.host_bytes
    bpe = pretrain_plan(
        build_settings(None, {**settings, "tokenizer": "bpe"}, PretrainConfig), None, None
    )
    per_char = ENCODING_BYTES_PER_CHAR + BPE_TRAINING_BYTES_PER_CHAR
    tokens = bpe.data["tokens"]
    assert bpe.host_bytes == per_char * chars + ENCODING_BYTES_PER_TOKEN * tokens
    given = pretrain_plan(build_settings(None, settings, PretrainConfig), None, 10_000)
    assert given.host_bytes == 0  # --tokens: no corpus read, nothing measured to keep
    from ragtune.train.config import TrainConfig

    lora = finetune_token_plan(TrainConfig(max_length=64), shapes.from_public("smollm2-135m"), 640)
    assert price(lora, where).memory.process == 4e8  # fine-tuning: the full baseline


def test_the_first_step_pays_fresh_pages_for_gradients_and_adamw_states() -> None:
    model = shapes.from_public("smollm2-135m")
    where = hardware.Hardware("this", 1, None, None, machine=machine(fresh_page_seconds=1e-6))
    full = compute.first_touch_seconds(where, model, Method("full"))
    assert full == pytest.approx(3 * 4 * model.parameters / 4096 * 1e-6)
    lora = compute.first_touch_seconds(where, model, Method("lora"))
    assert lora == pytest.approx(3 * 4 * compute.lora_parameters(model, 16) / 4096 * 1e-6)
    assert (
        compute.first_touch_seconds(hardware.hardware("h100", measure=False), model, Method("full"))
        == 0
    )


def test_rag_prices_its_questions_with_an_answering_model_of_a_given_size(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("The dark energy potion tastes of plums. " * 20)
    small = estimate(Request("rag", [tmp_path], model="qwen2.5-0.5b", device="l4"))
    big = estimate(Request("rag", [tmp_path], params=7e9, device="l4"))
    assert big["model"]["parameters"] == shapes.from_public("7b").parameters
    assert small["model"]["parameters"] == shapes.from_public("qwen2.5-0.5b").parameters
    slow, fast = big["rag"]["question_seconds"], small["rag"]["question_seconds"]
    assert slow["generation"] / fast["generation"] == pytest.approx(
        big["model"]["parameters"] / small["model"]["parameters"]  # fp16 weights read a token
    )
