"""Training at scale: the accelerate configs in examples/accelerate/, and FSDP runs.

Every config is read by accelerate's own loader and launch-argument checks, as
``accelerate launch --config_file`` reads it.

FSDP (full shard, version 2) runs of ``ragtune finetune`` (LoRA and full) and
``ragtune pretrain`` on two CPU processes (gloo) must match one process accumulating the
same micro-batches, save a model that loads, and resume from a sharded checkpoint.
accelerate 1.15 runs FSDP on accelerators only: on a CPU its state is MULTI_CPU, the
FSDP plugin is never set, and ``Accelerator()`` under an FSDP config fails with

    AttributeError: `AcceleratorState` object has no attribute `fsdp_plugin`

while torch's ``fully_shard`` itself works on CPU with gloo. So this file, run as a
script under ``accelerate launch --config_file examples/accelerate/fsdp-full-shard.yaml``,
builds the FSDP plugin from the variables that launch set (as ``Accelerator()`` does),
creates the CPU accelerator, marks its state FSDP, then runs the ragtune command
unchanged: accelerate's own FSDP2 preparation, no_sync, gradient clipping and ragtune's
gathering and restoring of shards all run for real; only accelerate's device check is
lifted. ``test_accelerate_launch_runs_fsdp_on_gpus`` runs the plain command where two
GPUs exist.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "accelerate"
FSDP_CONFIG = CONFIGS / "fsdp-full-shard.yaml"
SHAKESPEARE = ROOT.parent / "shared/data/pretrain/tinyshakespeare.txt"
# One thread per process: two cores are shared here (see the guide).
ENV = {"COLUMNS": "200", "RAGTUNE_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
# Two processes each summing half the micro-batches, then averaging gradients, against
# one process summing them all: the same arithmetic in another order. fp32 rounding of
# that reordering stays near 1e-6 relative over a few steps (the DDP tests hold 1e-4).
CLOSE = 1e-4
# What the worker prints once accelerate has sharded the network (see the end).
SHARDED = "FSDP sharded"
# What each distributed_type is called in the file names.
KINDS = {"MULTI_GPU": "ddp", "FSDP": "fsdp", "DEEPSPEED": "deepspeed"}


# ----------------------------------------------------------------------------- configs


def launch_args(config: Path) -> Any:
    """The arguments ``accelerate launch --config_file CONFIG train.py`` ends up with."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    parsed = launch_command_parser().parse_args(["--config_file", str(config), "train.py"])
    args, _defaults, _precision = _validate_launch_command(parsed)
    return args


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_accelerate_config_loads_with_accelerates_own_loader(path: Path) -> None:
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    config = load_config_from_file(str(path))  # unknown top-level keys raise here
    assert isinstance(config, ClusterConfig)
    kind = KINDS[config.distributed_type.value]
    assert path.name.startswith(kind)
    # launch copies fsdp_config and deepspeed_config keys onto its arguments without a
    # check: a misspelt key would be dropped silently, so each must be one launch knows.
    known = {action.dest for action in launch_command_parser()._actions}
    for key in [*config.fsdp_config, *config.deepspeed_config]:
        assert key in known, f"{path.name}: {key} is not an accelerate launch setting"
    args = launch_args(path)
    assert args.num_processes == config.num_processes >= 2
    if kind == "ddp":
        assert args.multi_gpu and args.num_machines == config.num_machines
        if config.num_machines > 1:
            assert config.main_process_ip and config.main_process_port
    if kind == "deepspeed":
        assert args.use_deepspeed and args.gradient_accumulation_steps == 1
        assert args.zero_stage == int(path.stem[-1])
        assert not args.zero3_init_flag


@pytest.mark.parametrize("name", ["fsdp-full-shard.yaml", "fsdp-full-shard-offload.yaml"])
def test_the_fsdp_configs_make_accelerates_fsdp2_full_shard_plugin(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin accelerate builds in each process from what launch exported."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    exported = prepare_multi_gpu_env(launch_args(CONFIGS / name))
    for key, value in exported.items():
        if key.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is True  # full shard
    assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]
    assert plugin.state_dict_type.name == "FULL_STATE_DICT"
    offloaded = type(plugin.cpu_offload).__name__ == "CPUOffloadPolicy"
    assert offloaded == name.endswith("offload.yaml")


# ----------------------------------------------------------------------------- FSDP on CPU


def launch_fsdp(*ragtune_args: str, processes: int = 2) -> subprocess.CompletedProcess[str]:
    """``ragtune ARGS`` under ``accelerate launch`` with the FSDP config, on CPU processes;
    a run that trained checks it trained sharded."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG),
        "--num_processes", str(processes), "--mixed_precision", "no", "--dynamo_backend", "no",
        __file__, *ragtune_args,
    ]  # fmt: skip
    env = {**os.environ, **ENV}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    if result.returncode == 0:
        reports = [line for line in result.stderr.splitlines() if line.startswith(SHARDED)]
        assert len(reports) == processes, result.stderr[-3000:]
        assert all(not line.startswith(f"{SHARDED} 0 ") for line in reports)
    return result


def run_single(*ragtune_args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ragtune", *ragtune_args]
    env = {**os.environ, **ENV}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def assert_same_tensors(a: dict[str, Any], b: dict[str, Any], what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        assert a[key].shape == b[key].shape, f"{what}: {key}"
        assert (a[key] - b[key]).abs().max() <= CLOSE * (1 + b[key].abs().max()), f"{what}: {key}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Imported here: this file also runs as a script under accelerate launch, where the
    # tests package is not importable (as tiny() does with tests.tiny_models).
    from tests.helpers import FINETUNE_FACTS

    rows = [{"instruction": q, "input": "", "output": a} for q, a in FINETUNE_FACTS * 4]
    path = tmp_path_factory.mktemp("data") / "alpaca.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def finetune_args(tiny: Path, data: Path, recipe: Path, lr: str, *extra: str) -> list[str]:
    return [
        "finetune", "--base", str(tiny), "--data", str(data), "--config", str(recipe),
        "--max-steps", "3", "--batch-size", "2", "--max-length", "96", "--lr", lr,
        "--eval-fraction", "0", "--seed", "3", *extra,
    ]  # fmt: skip


def test_fsdp_lora_on_two_cpu_processes_matches_one_process_and_resumes(
    tiny: Path, facts: Path, tmp_path: Path
) -> None:
    """A sharded LoRA run: its checkpoint (weights and optimizer state gathered from
    both shards), its adapter and its losses equal one process accumulating the same
    micro-batches; resumed from that checkpoint it ends where the whole run ended."""
    import torch
    from safetensors.torch import load_file

    recipe = tmp_path / "nodrop.yaml"
    recipe.write_text("lora_dropout: 0.0\n")  # dropout draws differ between processes
    common = finetune_args(tiny, facts, recipe, "5e-3", "--save-every", "2")
    sharded = launch_fsdp(*common, "--output", str(tmp_path / "fsdp"))
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    single = run_single(*common, "--grad-accum", "2", "--output", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr[-3000:]

    assert losses(tmp_path / "fsdp") == pytest.approx(losses(tmp_path / "one"), rel=CLOSE)
    adapter = load_file(str(tmp_path / "fsdp" / "adapter" / "adapter_model.safetensors"))
    reference = load_file(str(tmp_path / "one" / "adapter" / "adapter_model.safetensors"))
    assert_same_tensors(adapter, reference, "adapter")
    step = Path("checkpoints") / "step-00000002"
    assert_same_tensors(
        load_file(str(tmp_path / "fsdp" / step / "trainable.safetensors")),
        load_file(str(tmp_path / "one" / step / "trainable.safetensors")),
        "checkpoint weights",
    )
    moments = [
        torch.load(tmp_path / run / step / "optimizer.pt", weights_only=True)
        for run in ("fsdp", "one")
    ]
    assert moments[0]["state"].keys() == moments[1]["state"].keys()
    for name, state in moments[0]["state"].items():
        assert_same_tensors(state, moments[1]["state"][name], f"optimizer {name}")

    # Interrupted after the checkpoint of step 2: resumed, sharded again, it ends equal.
    (tmp_path / "fsdp" / "adapter").rename(tmp_path / "uninterrupted")
    resumed = launch_fsdp(*common, "--output", str(tmp_path / "fsdp"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = load_file(str(tmp_path / "fsdp" / "adapter" / "adapter_model.safetensors"))
    assert_same_tensors(again, adapter, "resumed adapter")
    assert losses(tmp_path / "fsdp") == pytest.approx(losses(tmp_path / "one"), rel=CLOSE)

    # The adapter loads onto its base as any other.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny), tmp_path / "fsdp" / "adapter"
    )
    assert sum(1 for name, _ in model.named_parameters() if "lora_" in name) == len(adapter)


def test_fsdp_full_finetuning_on_two_cpu_processes_saves_the_whole_model(
    tiny: Path, facts: Path, tmp_path: Path
) -> None:
    """Every weight trained and sharded: the saved model is gathered whole (the tied
    embedding and head included) and equals one process's."""
    import torch
    from transformers import AutoModelForCausalLM

    recipe = tmp_path / "full.yaml"
    recipe.write_text("method: full\n")
    common = finetune_args(tiny, facts, recipe, "1e-3", "--save-every", "100")
    sharded = launch_fsdp(*common, "--output", str(tmp_path / "fsdp"))
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    single = run_single(*common, "--grad-accum", "2", "--output", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr[-3000:]

    assert losses(tmp_path / "fsdp") == pytest.approx(losses(tmp_path / "one"), rel=CLOSE)
    models = [AutoModelForCausalLM.from_pretrained(tmp_path / run / "model") for run in ("fsdp", "one")]  # fmt: skip
    base = AutoModelForCausalLM.from_pretrained(tiny)
    weights = [dict(model.named_parameters()) for model in (*models, base)]
    assert_same_tensors(weights[0], weights[1], "model")
    moved = weights[0]["model.layers.0.mlp.up_proj.weight"] - weights[2]["model.layers.0.mlp.up_proj.weight"]  # fmt: skip
    assert moved.abs().max() > 1e-4  # trained, not the base saved back
    tokens = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        logits = [model(input_ids=tokens).logits for model in models]
    assert (logits[0] - logits[1]).abs().max() < 1e-3


def test_fsdp_pretraining_on_two_cpu_processes_matches_one_process(tmp_path: Path) -> None:
    """The model, its validation loss and its sample (--sample-every: every process helps
    gather the weights, the main process samples from a whole copy) equal one process's."""
    from safetensors.torch import load_file

    corpus = tmp_path / "shakespeare.txt"
    corpus.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:60_000], encoding="utf-8")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("sample_tokens: 12\n")
    common = ["pretrain", "-d", str(corpus), "--tokenizer", "char", "--config", str(recipe)]
    common += ["--layers", "2", "--heads", "2", "--dim", "32", "--context", "32"]
    common += ["--max-steps", "4", "--batch-size", "4", "--eval-every", "2", "--seed", "5"]
    common += ["--sample-every", "4"]
    sharded = launch_fsdp(*common, "--output", str(tmp_path / "fsdp"))
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    single = run_single(*common, "--grad-accum", "2", "--output", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr[-3000:]

    a = load_file(str(tmp_path / "fsdp" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    assert_same_tensors(a, b, "pretrained model")
    summaries = [json.loads((tmp_path / run / "summary.json").read_text()) for run in ("fsdp", "one")]  # fmt: skip
    assert summaries[0]["val_loss"] == pytest.approx(summaries[1]["val_loss"], rel=CLOSE)
    assert summaries[0]["tokens"] == summaries[1]["tokens"] == 4 * 2 * 4 * 32
    samples = [last_record(tmp_path / run)["sample"] for run in ("fsdp", "one")]
    assert samples[0] and samples[0] == samples[1]


def last_record(run: Path) -> dict[str, Any]:
    return dict(json.loads((run / "metrics.jsonl").read_text().splitlines()[-1]))


# accelerate builds an FSDP1 or DeepSpeed state on accelerators only (FSDP1's plugin asks
# for a device at construction; DeepSpeed is not installed here), so the refusals are
# checked on what they read of the accelerator: its distributed type and FSDP version.


def test_fsdp_version_1_is_refused_in_one_line() -> None:
    from accelerate.utils import DistributedType

    from ragtune.errors import TrainingError
    from ragtune.train.loop.sharding import check_accelerator

    check_accelerator(SimpleNamespace(distributed_type=DistributedType.FSDP, is_fsdp2=True))
    check_accelerator(SimpleNamespace(distributed_type=DistributedType.MULTI_GPU))
    with pytest.raises(TrainingError, match="FSDP version 2 only: set fsdp_version: 2") as error:
        check_accelerator(SimpleNamespace(distributed_type=DistributedType.FSDP, is_fsdp2=False))
    assert "\n" not in str(error.value)


def test_deepspeed_runs_that_would_checkpoint_or_accumulate_are_refused_before_training() -> None:
    from accelerate.utils import DistributedType

    from ragtune.errors import TrainingError
    from ragtune.train.loop.sharding import check_run

    deepspeed = SimpleNamespace(distributed_type=DistributedType.DEEPSPEED)
    check_run(deepspeed, total_steps=100, save_every=100, grad_accum=1)
    with pytest.raises(TrainingError, match="resumable checkpoint under DeepSpeed"):
        check_run(deepspeed, total_steps=100, save_every=50, grad_accum=1)
    with pytest.raises(TrainingError, match="needs --grad-accum 1"):
        check_run(deepspeed, total_steps=100, save_every=500, grad_accum=4)
    fsdp = SimpleNamespace(distributed_type=DistributedType.FSDP)
    check_run(fsdp, total_steps=100, save_every=50, grad_accum=4)


# ----------------------------------------------------------------------------- GPUs


def test_accelerate_launch_runs_fsdp_on_gpus(tiny: Path, facts: Path, tmp_path: Path) -> None:
    """The command of examples/accelerate/README.md as written, where two GPUs exist."""
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip(
            "needs 2 CUDA GPUs: accelerate runs FSDP on accelerators only; on CPU its "
            'Accelerator() fails with "AttributeError: `AcceleratorState` object has no '
            'attribute `fsdp_plugin`" (the CPU tests above lift that check)'
        )
    recipe = tmp_path / "nodrop.yaml"
    recipe.write_text("lora_dropout: 0.0\n")
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG),
        "--num_processes", "2", "-m", "ragtune",
        *finetune_args(tiny, facts, recipe, "5e-3", "--save-every", "2"), "--output", str(tmp_path / "run"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()


# ----------------------------------------------------------------------------- the worker


def run_ragtune_with_fsdp_on_cpu(argv: list[str]) -> None:
    """``ragtune ARGV`` in one process of an FSDP launch, on a CPU (see the docstring)."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    import ragtune.train.run as run
    from ragtune.cli import main
    from ragtune.train.loop.sharding import check_accelerator

    make_accelerator = run.make_accelerator

    def fsdp_accelerator(dtype: Any) -> Any:
        plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* variables launch set
        os.environ["ACCELERATE_USE_FSDP"] = "false"  # else Accelerator() fails on a CPU
        accelerator = make_accelerator(dtype)
        # Both states: accelerate copies PartialState's into AcceleratorState again later.
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        accelerator.state.distributed_type = DistributedType.FSDP
        accelerator.state.fsdp_plugin = plugin
        check_accelerator(accelerator)
        prepare = accelerator.prepare

        def prepare_and_report(*objects: Any) -> Any:
            from torch.distributed.tensor import DTensor

            prepared = prepare(*objects)
            shards = [p for p in prepared[0].parameters() if isinstance(p, DTensor)]
            print(f"{SHARDED} {len(shards)} parameters", file=sys.stderr, flush=True)
            return prepared

        accelerator.prepare = prepare_and_report
        return accelerator

    run.make_accelerator = fsdp_accelerator
    sys.argv = ["ragtune", *argv]
    main()


if __name__ == "__main__":
    run_ragtune_with_fsdp_on_cpu(sys.argv[1:])


def test_a_checkpoint_with_optimizer_state_keyed_by_position_still_resumes() -> None:
    """Checkpoints written before optimizer state was keyed by name hold torch's own
    ``optimizer.state_dict()``: resuming one restores the same moments."""
    import torch

    from ragtune.train.loop.sharding import load_optimizer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    first = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(5, 4)).sum().backward()
    first.step()
    old_format = first.state_dict()
    assert all(isinstance(key, int) for key in old_format["state"])

    second = torch.optim.AdamW(model.parameters(), lr=0.1)
    load_optimizer(model, second, old_format)
    for before, after in zip(first.state.values(), second.state.values(), strict=True):
        assert torch.equal(before["exp_avg"], after["exp_avg"])
        assert torch.equal(before["exp_avg_sq"], after["exp_avg_sq"])
