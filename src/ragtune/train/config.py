"""Training settings: one dataclass, filled from a YAML recipe and then from CLI flags.

A recipe (``examples/recipes/*.yaml``) uses the field names below as keys. An unknown key
or a value of the wrong type is an error naming the key, so a typo never trains silently
with a default.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ragtune.errors import TrainingError

Method = Literal["lora", "full"]
Overlong = Literal["truncate", "skip", "error"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Schedule = Literal["cosine", "linear", "constant"]
Settings = typing.TypeVar("Settings")

# How an error shows a recipe's value: anchors can make a few lines of YAML a value of
# billions of items, and a plain repr would try to write them all.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring = 2, 4, 4, 80

# PEFT's shortcut for every linear layer except the output head.
ALL_LINEAR = "all-linear"


@dataclass
class TrainConfig:
    """Everything one fine-tuning or alignment run needs besides the data itself."""

    method: Method = "lora"
    base: str | None = None  # None: the bundled SmolLM2
    data: str | None = None
    from_index: str | None = None
    output: str = "ragtune-model"
    format: str = "auto"

    # sequence handling
    max_length: int = 1024
    packing: bool = False
    mask_prompt: bool = True
    overlong: Overlong = "truncate"

    # optimisation
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 4
    grad_accum: int = 1
    learning_rate: float | None = None  # None: 2e-4 for LoRA, 2e-5 for full
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    schedule: Schedule = "cosine"
    max_grad_norm: float = 1.0
    seed: int = 42
    gradient_checkpointing: bool = False

    # LoRA
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] | str = ALL_LINEAR

    # hardware
    precision: Precision = "auto"
    qlora: bool = False

    # evaluation, checkpoints, logging
    eval_fraction: float = 0.05
    eval_every: int | None = None  # None: at each checkpoint and at the end
    save_every: int = 100
    keep_checkpoints: int = 2

    # preference alignment (ragtune align)
    dpo_beta: float = 0.1

    # where the run came from, for the summary; not settable from a recipe
    recipe: str | None = field(default=None, metadata={"internal": True})

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 2e-4 if self.method == "lora" else 2e-5

    def validate(self) -> TrainConfig:
        """Reject settings no run could use, with the setting's name in the message."""
        positive = ("max_length", "batch_size", "grad_accum", "save_every", "lora_r", "lora_alpha")
        for name in positive:
            if getattr(self, name) <= 0:
                raise TrainingError(f"{name} must be positive, not {getattr(self, name)}")
        if self.keep_checkpoints < 1:
            raise TrainingError(f"keep_checkpoints must be at least 1, not {self.keep_checkpoints}")
        if not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise TrainingError(f"epochs must be a positive number, not {self.epochs}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise TrainingError(f"max_steps must be positive, not {self.max_steps}")
        if not 0 <= self.eval_fraction < 0.5:
            raise TrainingError(f"eval_fraction must be in [0, 0.5), not {self.eval_fraction}")
        if not 0 <= self.warmup_ratio < 1:
            raise TrainingError(f"warmup_ratio must be in [0, 1), not {self.warmup_ratio}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise TrainingError(f"learning_rate must be a positive number, not {self.lr}")
        if not 0 <= self.lora_dropout < 1:
            raise TrainingError(f"lora_dropout must be in [0, 1), not {self.lora_dropout}")
        if self.qlora and self.method != "lora":
            raise TrainingError("qlora applies to method lora only")
        for name in ("method", "overlong", "precision", "schedule"):
            _check_choice(name, getattr(self, name))
        return self


def _check_choice(name: str, value: Any) -> None:
    hint = typing.get_type_hints(TrainConfig)[name]
    choices = typing.get_args(hint)
    if value not in choices:
        raise TrainingError(f"{name} must be one of {', '.join(choices)}; not {value!r}")


def recipe_fields(kind: type[Any] = TrainConfig) -> dict[str, Any]:
    """Field name -> type hint, for the keys a recipe may set."""
    hints = typing.get_type_hints(kind)
    return {
        f.name: hints[f.name] for f in dataclasses.fields(kind) if not f.metadata.get("internal")
    }


def load_recipe(path: Path, kind: type[Any] = TrainConfig) -> dict[str, Any]:
    """Read a YAML recipe into checked field values (not yet a config: flags come on top)."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TrainingError(f"{path}: recipe not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TrainingError(f"{path}: cannot read recipe ({error})") from None
    try:
        values = yaml.safe_load(text)
    except RecursionError:  # the composer recurses once per level of nesting
        raise TrainingError(f"{path}: not valid YAML (nested too deeply)") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise TrainingError(f"{path}{where}: not valid YAML ({problem})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise TrainingError(
            f"{path}: a recipe is a mapping of settings, not {type(values).__name__}"
        )
    known = recipe_fields(kind)
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise TrainingError(
                f"{path}: unknown setting {key!r}; known settings: {', '.join(sorted(known))}"
            )
        checked[key] = _coerce(path, key, value, known[key])
    return checked


def _coerce(path: Path, key: str, value: Any, hint: Any) -> Any:
    """Accept a YAML value when it fits the field's type (ints for floats, "2e-4" for floats)."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    for option in options:
        accepted, converted = _accepts(option, value)
        if accepted:
            return converted
    raise TrainingError(f"{path}: setting {key!r} cannot be {_SHORT.repr(value)}")


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _accepts(option: Any, value: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(option)
    if option is type(None):
        return value is None, None
    if origin is Literal:
        return value in typing.get_args(option), value
    if origin is list:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return ok, value
    if option is bool:
        return isinstance(value, bool), value
    if option is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if option is float:
        if isinstance(value, bool):
            return False, None
        if isinstance(value, int | float):
            return True, float(value)
        if isinstance(value, str):  # PyYAML reads 2e-4 (no dot) as a string
            try:
                return True, float(value)
            except ValueError:
                return False, None
        return False, None
    if option is str:
        return isinstance(value, str), value
    return False, None


def build_config(recipe: Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Defaults, then the recipe, then the flags the user gave (None means not given)."""
    return build_settings(recipe, overrides, TrainConfig)


def build_settings(
    recipe: Path | None, overrides: dict[str, Any], kind: type[Settings]
) -> Settings:
    """``build_config`` for any settings dataclass (fine-tuning's TrainConfig, pretraining's
    PretrainConfig): it has an internal ``recipe`` field and a ``validate()`` returning it."""
    values = load_recipe(recipe, kind) if recipe is not None else {}
    known = recipe_fields(kind)
    for key in overrides:
        if key not in known:
            raise TrainingError(
                f"unknown setting {key!r}; known settings: {', '.join(sorted(known))}"
            )
    values.update({key: value for key, value in overrides.items() if value is not None})
    config = kind(**values)
    config.recipe = str(recipe) if recipe is not None else None  # type: ignore[attr-defined]
    return config.validate()  # type: ignore[attr-defined, no-any-return]


def config_as_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
