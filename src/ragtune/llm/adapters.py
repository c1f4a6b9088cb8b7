"""PEFT adapter directories: recognising one and finding the base model it was trained on.

Shared by the transformers backend (``hf:ADAPTER_DIR``), merging and GGUF export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragtune.errors import ModelNotFoundError

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(path: Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base(adapter_dir: Path) -> str:
    """The base model recorded in the adapter's config, as PEFT wrote it."""
    config = read_adapter_config(adapter_dir)
    base = config.get("base_model_name_or_path")
    if not isinstance(base, str) or not base.strip():
        raise ModelNotFoundError(
            f"adapter {adapter_dir} does not say which base model it belongs to; name the base "
            f"(--base, or hf:BASE_DIR#adapter={adapter_dir})"
        )
    return base


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    config_file = Path(adapter_dir) / ADAPTER_CONFIG
    if not Path(adapter_dir).is_dir():
        raise ModelNotFoundError(f"adapter {adapter_dir} does not exist or is not a directory")
    if not config_file.is_file():
        raise ModelNotFoundError(f"{adapter_dir} is not a PEFT adapter (no {ADAPTER_CONFIG})")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise ModelNotFoundError(f"cannot read {config_file}: {error}") from None
    if not isinstance(config, dict):
        raise ModelNotFoundError(f"{config_file} is not a JSON object")
    return config


ADAPTER_WEIGHTS = "adapter_model.safetensors"


def check_adapter_weights(adapter_dir: Path) -> None:
    """Adapters load from safetensors only: PEFT's fallback, adapter_model.bin, is a pickle
    that can run code when loaded."""
    if (Path(adapter_dir) / ADAPTER_WEIGHTS).is_file():
        return
    pickled = Path(adapter_dir) / "adapter_model.bin"
    if pickled.is_file():
        raise ModelNotFoundError(
            f"adapter {adapter_dir} has its weights in {pickled.name}, a pickle that can run "
            f"code when loaded; ragtune reads safetensors only: convert them to {ADAPTER_WEIGHTS}"
        )
    raise ModelNotFoundError(f"adapter {adapter_dir} has no weights ({ADAPTER_WEIGHTS})")
