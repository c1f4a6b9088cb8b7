"""Checkpoints that survive a crash or a full disk.

Each checkpoint is written into a temporary directory and renamed into place; only then
does ``latest`` (a one-line file, replaced atomically) point at it. A save that fails
halfway leaves the previous checkpoint as the latest and removes its own debris.

    OUTPUT/checkpoints/step-00000100/trainable.safetensors   trainable weights only
                                    /optimizer.pt, scheduler.pt, rng.pt
                                                             (optimizer state keyed by name)
                                    /state.json              step, loss history, config
    OUTPUT/checkpoints/latest                                "step-00000100"

Weights and optimizer state are written whole, gathered from every process when the
model is sharded (FSDP), so a checkpoint resumes whether the run is sharded or not (see
``sharding``).

A checkpoint is data, never code. The ``.pt`` files hold tensors and plain values only and
are read with ``torch.load(weights_only=True)``, which refuses anything else (a pickle
crafted to run code on loading included); ``latest`` may only name a ``step-`` directory
beside it.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragtune.atomic import StagedDirectory, discard_leftovers, write_failure, write_text_atomic
from ragtune.errors import TrainingError, first_line

if TYPE_CHECKING:  # torch is imported where used: a bad dataset fails before it loads
    import torch

LATEST = "latest"
_STEP_NAME = re.compile(r"step-\d{8}")
# torch.load's weights_only check could be bypassed before 2.6 (CVE-2025-32434).
SAFE_TORCH_LOAD = (2, 6)


@dataclass
class Checkpoint:
    path: Path
    state: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.state["step"])


def checkpoint_dir(output: Path) -> Path:
    return output / "checkpoints"


def step_name(step: int) -> str:
    return f"step-{step:08d}"


@dataclass
class Snapshot:
    """The trained state, whole: taken by every process (a collective when the model is
    sharded), held by the main process alone, which writes it."""

    weights: dict[str, torch.Tensor]  # the trainable parameters (LoRA's, or all of them)
    optimizer: dict[str, Any]  # keyed by parameter name, not position


def snapshot(model: torch.nn.Module, optimizer: Any) -> Snapshot:
    from ragtune.train.loop.sharding import gather_optimizer, gather_weights

    return Snapshot(gather_weights(model, trainable_only=True), gather_optimizer(model, optimizer))


def save_checkpoint(
    output: Path,
    step: int,
    taken: Snapshot,
    scheduler: Any,
    state: dict[str, Any],
    keep: int,
) -> Path:
    import torch
    from safetensors.torch import save_file

    root = checkpoint_dir(output)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_name(step)
    try:
        # A rerun of the same step after a resume replaces that step's checkpoint whole.
        with StagedDirectory(final) as staging:
            save_file(taken.weights, str(staging / "trainable.safetensors"))
            torch.save(taken.optimizer, staging / "optimizer.pt")
            torch.save(scheduler.state_dict(), staging / "scheduler.pt")
            torch.save(torch.get_rng_state(), staging / "rng.pt")
            state_json = json.dumps({**state, "step": step})
            (staging / "state.json").write_text(state_json, encoding="utf-8")
        write_text_atomic(root / LATEST, final.name + "\n")
    except Exception as error:  # torch and safetensors report a full disk in their own types
        raise TrainingError(_save_failure(error, root, final, latest_name(output))) from None
    _prune(root, keep)
    return final


def _save_failure(error: Exception, root: Path, target: Path, latest: str | None) -> str:
    reason = write_failure(error, root)
    kept = f"the latest checkpoint is still {latest}" if latest else "no checkpoint was kept"
    return f"cannot save checkpoint {target}: {reason}; {kept}"


def _prune(root: Path, keep: int) -> None:
    """Old checkpoints beyond ``keep`` and debris of interrupted saves go (one run
    writes into ``root``: nothing else is writing there)."""
    latest = (root / LATEST).read_text().strip() if (root / LATEST).exists() else None
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep]:
        if old.name != latest:
            shutil.rmtree(old, ignore_errors=True)
    discard_leftovers(root)


def latest_name(output: Path) -> str | None:
    pointer = checkpoint_dir(output) / LATEST
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return None
    if not _STEP_NAME.fullmatch(name):  # never a path out of the run
        return None
    return name if (checkpoint_dir(output) / name / "state.json").is_file() else None


def load_latest(output: Path) -> Checkpoint | None:
    name = latest_name(output)
    if name is None:
        return None
    path = checkpoint_dir(output) / name
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise TrainingError(f"checkpoint {path} is damaged ({error})") from None
    problem = _state_problem(state)
    if problem:
        raise TrainingError(f"checkpoint {path} is damaged ({problem} in state.json)")
    return Checkpoint(path, state)


def _state_problem(state: Any) -> str | None:
    if not isinstance(state, dict):
        return "not a JSON object"
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return f"step {step!r}"
    for key, kind in (("history", list), ("config", dict)):
        if key in state and not isinstance(state[key], kind):
            return f"{key} is not a {kind.__name__}"
    return None


def restore(
    checkpoint: Checkpoint,
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
) -> None:
    """Every process restores the whole state and keeps its own share of it (its shard
    under FSDP): the files must be readable by all of them (one shared run directory)."""
    import torch
    from safetensors.torch import load_file

    from ragtune.train.loop.sharding import load_optimizer, load_weights, trainable_names

    _require_safe_torch_load(checkpoint.path)
    try:
        weights = load_file(str(checkpoint.path / "trainable.safetensors"))
        expected = trainable_names(model)
        if set(weights) != expected:
            raise TrainingError(
                f"checkpoint {checkpoint.path} was made for a different model or method"
            )
        optimizer_state = _read_plain(checkpoint.path / "optimizer.pt", dict)
        scheduler_state = _read_plain(checkpoint.path / "scheduler.pt", dict)
        rng_state = _read_plain(checkpoint.path / "rng.pt", torch.Tensor)
        foreign = set(scheduler_state) - set(scheduler.state_dict())
        if foreign:
            raise TrainingError(
                f"cannot resume from {checkpoint.path}: scheduler.pt holds keys no scheduler "
                f"has ({', '.join(sorted(map(str, foreign)))})"
            )
        load_weights(model, weights)
        load_optimizer(model, optimizer, optimizer_state)
        scheduler.load_state_dict(scheduler_state)
        torch.set_rng_state(rng_state)
    except (OSError, RuntimeError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise TrainingError(f"cannot resume from {checkpoint.path}: {first_line(error)}") from None


def _require_safe_torch_load(path: Path) -> None:
    import torch

    release = re.match(r"(\d+)\.(\d+)", torch.__version__)
    if release is None or (int(release[1]), int(release[2])) < SAFE_TORCH_LOAD:
        raise TrainingError(
            f"cannot resume from {path} with torch {torch.__version__}: its loading of "
            "checkpoints can run code from a crafted file (CVE-2025-32434); "
            "upgrade to torch 2.6 or newer"
        )


def _read_plain(path: Path, kind: type) -> Any:
    """A torch-saved file, read as tensors and plain values only: never as code."""
    import torch

    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise TrainingError(
            f"cannot resume from {path.parent}: {path.name} holds objects other than tensors "
            "and plain values (a checkpoint ragtune did not write, perhaps crafted to run "
            "code); it was not loaded"
        ) from None
    if not isinstance(value, kind):
        raise TrainingError(
            f"cannot resume from {path.parent}: {path.name} holds a {type(value).__name__}, "
            f"not a {kind.__name__}"
        )
    return value
