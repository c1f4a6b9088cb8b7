"""Hostile inputs to training, merging and export (issue #11): crafted checkpoints and model
directories must never run code, and an output must never land on what a command reads.

A "crafted" file here plants a marker file when it is unpickled or imported: the marker's
absence is the proof that nothing ran. Models are tiny random Llamas (tests/tiny_models.py).
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import (
    assert_one_line_error,
    finetune_settings,
    one_line_message,
    run_cli_in_process,
)
from tests.tiny_models import make_tiny_llama

pytest.importorskip("peft", reason="fine-tuning needs the train extra (peft)")
pytest.importorskip("accelerate", reason="fine-tuning needs the train extra (accelerate)")

from ragtune.errors import DatasetError, ModelNotFoundError, RagtuneError, TrainingError  # noqa: E402
from ragtune.runtime import configure_torch_threads  # noqa: E402
from ragtune.train.config import build_config  # noqa: E402
from ragtune.train.export.gguf_export import export_gguf  # noqa: E402
from ragtune.train.export.merge import merge_adapter  # noqa: E402
from ragtune.train.models.base_model import SOURCE_FILE, resolve_base_model  # noqa: E402
from ragtune.train.run import train  # noqa: E402

configure_torch_threads()  # one thread: the machine's cores are shared

FACTS = [
    ("Who keeps the lighthouse?", "Mara Quill keeps the lighthouse."),
    ("When does the ferry leave?", "The ferry leaves at seven every morning."),
]


class Plant:
    """Unpickled, this opens ``marker`` for writing, creating it: what a shell command could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def tree(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def tiny(workdir: Path) -> Path:
    return make_tiny_llama(workdir / "base")


@pytest.fixture(scope="module")
def data(workdir: Path) -> Path:
    path = workdir / "facts.json"
    path.write_text(json.dumps([{"instruction": q, "input": "", "output": a} for q, a in FACTS]))
    return path


def settings(tiny: Path, data: Path, output: Path, **extra: object) -> dict[str, object]:
    return finetune_settings(tiny, data, output, **{"max_length": 64, **extra})


@pytest.fixture(scope="module")
def finished_run(tiny: Path, data: Path, workdir: Path) -> Path:
    """A finished four-step LoRA run whose latest checkpoint is step 2."""
    output = workdir / "run"
    train(build_config(None, settings(tiny, data, output)), "sft")
    return output


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


@pytest.fixture(scope="module")
def adapter(tiny: Path, workdir: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    config = LoraConfig(r=2, lora_alpha=4, init_lora_weights=False, target_modules=["q_proj"])
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny), config)
    where = workdir / "adapter"
    model.save_pretrained(str(where))
    return where


@pytest.fixture
def model_copy(tiny: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny, tmp_path / "model"))


# ----------------------------------------------------------------------------- resume


@pytest.mark.parametrize("name", ["scheduler.pt", "optimizer.pt", "rng.pt"])
def test_resume_never_unpickles_code_from_a_checkpoint(
    name: str, run_copy: Path, tiny: Path, data: Path, tmp_path: Path
) -> None:
    import torch

    checkpoint = run_copy / "checkpoints" / "step-00000002"
    marker = tmp_path / "planted"
    torch.save(Plant(marker), checkpoint / name)
    with pytest.raises(TrainingError) as error:
        train(build_config(None, settings(tiny, data, run_copy)), "sft", resume=True)
    one_line_message(error, name, str(checkpoint))
    assert not marker.exists()


def test_resume_refuses_a_torch_whose_safe_loading_is_not(
    run_copy: Path, tiny: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch, "__version__", "2.5.1")  # CVE-2025-32434: weights_only bypass
    with pytest.raises(TrainingError) as error:
        train(build_config(None, settings(tiny, data, run_copy)), "sft", resume=True)
    one_line_message(error, "2.6")


def test_a_checkpoint_pointer_never_leaves_the_run(
    run_copy: Path, tiny: Path, data: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(run_copy / "checkpoints" / "step-00000002", elsewhere)
    (run_copy / "checkpoints" / "latest").write_text("../../elsewhere\n")
    with pytest.raises(TrainingError) as error:
        train(build_config(None, settings(tiny, data, run_copy)), "sft", resume=True)
    one_line_message(error, "nothing to resume")


@pytest.mark.parametrize(
    "damage", [{"step": "two"}, {"step": -3}, {"history": "not a list"}, "not an object"]
)
def test_a_damaged_checkpoint_state_is_one_line(
    damage: object, run_copy: Path, tiny: Path, data: Path
) -> None:
    checkpoint = run_copy / "checkpoints" / "step-00000002"
    state = json.loads((checkpoint / "state.json").read_text())
    state = {**state, **damage} if isinstance(damage, dict) else damage
    (checkpoint / "state.json").write_text(json.dumps(state))
    with pytest.raises(TrainingError) as error:
        train(build_config(None, settings(tiny, data, run_copy)), "sft", resume=True)
    one_line_message(error, str(checkpoint))


def test_a_scheduler_state_with_foreign_keys_is_refused(
    run_copy: Path, tiny: Path, data: Path
) -> None:
    import torch

    checkpoint = run_copy / "checkpoints" / "step-00000002"
    state = torch.load(checkpoint / "scheduler.pt", weights_only=True)
    state["optimizer"] = {"hijacked": 1}  # plain data, but not a scheduler's
    torch.save(state, checkpoint / "scheduler.pt")
    with pytest.raises(TrainingError) as error:
        train(build_config(None, settings(tiny, data, run_copy)), "sft", resume=True)
    one_line_message(error, "scheduler.pt")


# ----------------------------------------------------------------------------- untrusted models


def crafted_model(tiny: Path, where: Path, marker: Path) -> Path:
    """The tiny model, but its config asks for custom code that plants ``marker`` on import."""
    shutil.copytree(tiny, where)
    config = json.loads((where / "config.json").read_text())
    config["model_type"] = "ragtune-planted"
    config["auto_map"] = {
        "AutoConfig": "planted.PlantedConfig",
        "AutoModelForCausalLM": "planted.PlantedModel",
    }
    (where / "config.json").write_text(json.dumps(config))
    (where / "planted.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n"
        "class PlantedConfig(LlamaConfig):\n    model_type = 'ragtune-planted'\n"
        "class PlantedModel(LlamaForCausalLM):\n    config_class = PlantedConfig\n"
    )
    return where


@pytest.mark.parametrize("command", ["hf-backend", "finetune", "merge"])
def test_a_model_asking_for_its_own_code_is_refused_without_a_prompt(
    command: str,
    tiny: Path,
    data: Path,
    adapter: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = tmp_path / "planted"
    model = crafted_model(tiny, tmp_path / "crafted", marker)
    # transformers asks "Do you wish to run the custom code? [y/N]" on stdin unless told no
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n" * 10))
    with pytest.raises(RagtuneError) as error:
        if command == "hf-backend":
            from ragtune.llm.transformers_backend import TransformersLLM

            TransformersLLM(model).load()
        elif command == "finetune":
            train(build_config(None, settings(model, data, tmp_path / "run")), "sft")
        else:
            merge_adapter(adapter, tmp_path / "merged", base=model)
    one_line_message(error)
    assert not marker.exists()


def pickled_weights_only(tiny: Path, where: Path) -> Path:
    """The tiny model with its weights as pytorch_model.bin (a pickle) instead of safetensors."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(tiny, where)
    weights = load_file(str(where / "model.safetensors"))
    (where / "model.safetensors").unlink()
    torch.save(weights, where / "pytorch_model.bin")
    return where


def test_a_base_model_with_pickled_weights_is_refused(tiny: Path, tmp_path: Path) -> None:
    model = pickled_weights_only(tiny, tmp_path / "pickled")
    with pytest.raises(ModelNotFoundError) as error:
        resolve_base_model(model)
    one_line_message(error, "safetensors", "pytorch_model.bin")


def test_the_transformers_backend_refuses_pickled_weights(tiny: Path, tmp_path: Path) -> None:
    from ragtune.llm.transformers_backend import TransformersLLM

    model = pickled_weights_only(tiny, tmp_path / "pickled")
    with pytest.raises(ModelNotFoundError) as error:
        TransformersLLM(model).load()
    one_line_message(error, "safetensors", "pytorch_model.bin")


def test_an_adapter_with_pickled_weights_is_refused(
    adapter: Path, tiny: Path, tmp_path: Path
) -> None:
    import torch
    from safetensors.torch import load_file

    from ragtune.llm.transformers_backend import TransformersLLM

    pickled = Path(shutil.copytree(adapter, tmp_path / "adapter"))
    weights = load_file(str(pickled / "adapter_model.safetensors"))
    (pickled / "adapter_model.safetensors").unlink()
    torch.save(weights, pickled / "adapter_model.bin")
    with pytest.raises(ModelNotFoundError) as error:
        merge_adapter(pickled, tmp_path / "merged")
    one_line_message(error, "safetensors", "adapter_model.bin")
    assert not (tmp_path / "merged").exists()
    with pytest.raises(ModelNotFoundError) as error:
        TransformersLLM(tiny, adapter_dir=pickled)
    one_line_message(error, "safetensors")


# ----------------------------------------------------------------------------- export


def test_export_never_writes_over_the_model_it_reads(model_copy: Path, tmp_path: Path) -> None:
    before = tree(model_copy)
    link = tmp_path / "link"
    link.symlink_to(model_copy)
    aimed = tmp_path / "aimed.gguf"
    aimed.symlink_to(model_copy / "config.json")
    targets = [
        model_copy / "model.safetensors",
        link / "model.safetensors",  # through a symlinked directory
        model_copy / ".." / model_copy.name / "config.json",  # through ..
        aimed,  # a symlink to one of its files
    ]
    for target in targets:
        for overwrite in (False, True):
            with pytest.raises(TrainingError) as error:
                export_gguf(model_copy, target, "f16", overwrite=overwrite)
            assert "--overwrite" not in one_line_message(error, str(target), "reads")
    assert tree(model_copy) == before
    assert not list(tmp_path.rglob(".*.tmp"))


def test_export_never_writes_over_the_gguf_the_model_came_from(
    model_copy: Path, tmp_path: Path
) -> None:
    source = tmp_path / "origin.gguf"
    source.write_bytes(b"GGUF" + bytes(60))
    (model_copy / SOURCE_FILE).write_text(json.dumps({"gguf": str(source), "sha256": "0" * 64}))
    with pytest.raises(TrainingError) as error:
        export_gguf(model_copy, source, "f16", overwrite=True)
    one_line_message(error, str(source))
    assert source.read_bytes() == b"GGUF" + bytes(60)


def test_export_of_an_adapter_never_writes_over_its_base(
    tiny: Path, adapter: Path, tmp_path: Path
) -> None:
    before = (tiny / "model.safetensors").read_bytes()
    with pytest.raises(TrainingError) as error:
        export_gguf(adapter, tiny / "model.safetensors", "f16", overwrite=True)
    one_line_message(error, "model.safetensors")
    assert (tiny / "model.safetensors").read_bytes() == before


def test_export_replaces_an_existing_file_only_with_overwrite(
    model_copy: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out.gguf"
    output.write_text("mine")
    with pytest.raises(TrainingError) as error:
        export_gguf(model_copy, output, "f16")
    one_line_message(error, str(output), "--overwrite")
    assert output.read_text() == "mine"
    export_gguf(model_copy, output, "f16", overwrite=True)
    assert output.read_bytes()[:4] == b"GGUF"
    # an earlier GGUF inside the model directory is not one of its inputs
    inside = export_gguf(model_copy, model_copy / "model.gguf", "f16")
    export_gguf(model_copy, inside, "f16", overwrite=True)


def test_export_under_a_file_is_one_clear_line(model_copy: Path, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(TrainingError) as error:
        export_gguf(model_copy, afile / "sub.gguf", "f16")
    message = one_line_message(error, str(afile), "not a directory")
    assert "File exists" not in message
    assert afile.read_text() == "x"


def test_cli_export_refuses_its_input_and_an_existing_output(
    model_copy: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    weights = model_copy / "model.safetensors"
    before = weights.read_bytes()
    for extra in ((), ("--overwrite",)):
        result = run_cli_in_process(
            capsys, monkeypatch, "export", str(model_copy), "-o", str(weights), *extra
        )
        assert_one_line_error(result, str(weights))
    assert weights.read_bytes() == before
    output = tmp_path / "[bold]out.gguf"  # a path that Rich would take for markup
    assert (
        run_cli_in_process(
            capsys, monkeypatch, "export", str(model_copy), "-o", str(output)
        ).returncode
        == 0
    )
    again = run_cli_in_process(capsys, monkeypatch, "export", str(model_copy), "-o", str(output))
    assert_one_line_error(again, "--overwrite")
    replaced = run_cli_in_process(
        capsys, monkeypatch, "export", str(model_copy), "-o", str(output), "--overwrite"
    )
    assert replaced.returncode == 0, replaced.stderr
    assert f"Wrote {output}" in replaced.stdout


# ----------------------------------------------------------------------------- merge


def test_merge_never_replaces_its_own_inputs(tiny: Path, adapter: Path, tmp_path: Path) -> None:
    base = Path(shutil.copytree(tiny, tmp_path / "base"))
    own = Path(shutil.copytree(adapter, tmp_path / "runs" / "adapter"))
    link = tmp_path / "link"
    link.symlink_to(base)
    before = {path: tree(path) for path in (base, own)}
    outputs = [own, base, tmp_path / "runs", link, own / ".." / ".." / "base"]
    for output in outputs:
        for overwrite in (False, True):
            with pytest.raises(TrainingError) as error:
                merge_adapter(own, output, base=base, overwrite=overwrite)
            assert "--overwrite" not in one_line_message(error, str(output), "reads")
    assert {path: tree(path) for path in (base, own)} == before


def test_merge_under_a_file_is_one_clear_line(adapter: Path, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(TrainingError) as error:
        merge_adapter(adapter, afile / "merged")
    message = one_line_message(error, str(afile), "not a directory")
    assert "File exists" not in message


# ----------------------------------------------------------------------------- finetune, align


@pytest.mark.parametrize("objective", ["sft", "dpo"])
def test_a_run_under_a_file_is_one_clear_line(
    objective: str, tiny: Path, data: Path, tmp_path: Path
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(TrainingError) as error:
        train(build_config(None, settings(tiny, data, afile / "run")), objective)
    message = one_line_message(error, str(afile), "not a directory")
    assert "File exists" not in message


def test_a_run_never_deletes_or_writes_over_its_inputs(
    run_copy: Path, tiny: Path, data: Path
) -> None:
    """--overwrite removes the run's checkpoints and final model: no input may be among them."""
    base = Path(shutil.copytree(tiny, run_copy / "model"))
    inside = run_copy / "checkpoints" / "facts.json"
    shutil.copy(data, inside)
    metrics = run_copy / "metrics.jsonl"
    shutil.copy(data, metrics)
    cases = [
        ({"base": str(base), "method": "full"}, base),
        ({"data": str(inside)}, inside),
        ({"data": str(metrics)}, metrics),  # the run would write its metrics over it
        ({"data": str(run_copy / ".." / run_copy.name / "metrics.jsonl")}, metrics),
    ]
    for extra, victim in cases:
        before = tree(victim) if victim.is_dir() else victim.read_bytes()
        values = {**settings(tiny, data, run_copy), **extra}
        with pytest.raises(TrainingError) as error:
            train(build_config(None, values), "sft", overwrite=True)
        one_line_message(error, str(run_copy))
        assert (tree(victim) if victim.is_dir() else victim.read_bytes()) == before


def test_overwrite_keeps_the_previous_run_until_the_new_one_can_start(
    run_copy: Path, tiny: Path, tmp_path: Path
) -> None:
    before = tree(run_copy)
    values = settings(tiny, tmp_path / "typo.json", run_copy)
    with pytest.raises(DatasetError):
        train(build_config(None, values), "sft", overwrite=True)
    assert tree(run_copy) == before


def test_a_recipe_nested_too_deeply_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    result = run_cli_in_process(
        capsys, monkeypatch, "finetune", "--config", str(deep), "--data", str(tmp_path / "d.json")
    )
    assert_one_line_error(result, f"{deep}: not valid YAML (nested too deeply)")
    assert result.returncode == 1


def test_a_recipe_value_that_anchors_expand_is_shown_short(tmp_path: Path) -> None:
    # Ten lines of anchors make a value of 10**10 items: its full repr would never finish.
    anchors = ["&a0 [x, x, x, x, x, x, x, x, x, x]"]
    anchors += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    recipe = tmp_path / "laughs.yaml"
    recipe.write_text(f"lora_targets: [{', '.join(anchors)}]\n")
    with pytest.raises(TrainingError) as error:
        build_config(recipe, {})
    assert len(one_line_message(error, "'lora_targets' cannot be")) < 300
