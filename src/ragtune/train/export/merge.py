"""Fold a LoRA adapter into its base model, giving a plain directory any tool can load.

``W' = W + (alpha / r) * B @ A`` for every adapted layer (PEFT's ``merge_and_unload``); the
result is written as safetensors beside the tokenizer, into a temporary directory that is
renamed into place, so a failure never leaves a half-written model at ``output_dir``. That
rename replaces ``output_dir`` whole, so it may not hold the adapter or the base it reads.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

from ragtune.atomic import StagedDirectory
from ragtune.errors import ModelNotFoundError, TrainingError, is_disk_full, one_line
from ragtune.llm.adapters import adapter_base, check_adapter_weights, read_adapter_config
from ragtune.train.models.base_model import (
    SOURCE_FILE,
    recorded_gguf,
    resolve_base_model,
    spec_path,
)
from ragtune.train.outputs import check_parents, refuse_inputs_within

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def merge_adapter(
    adapter_dir: Path,
    output_dir: Path,
    base: str | Path | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Merge the PEFT LoRA adapter in ``adapter_dir`` into its base; save it to ``output_dir``.

    The base is ``base`` if given, else the adapter's ``base_model_name_or_path``, resolved
    through ``resolve_base_model`` (so the bundled SmolLM2 and GGUF files work too).
    """
    adapter_dir = Path(adapter_dir).expanduser()
    output_dir = Path(output_dir).expanduser()
    if output_dir.exists() and not output_dir.is_dir():
        raise TrainingError(f"output {output_dir} exists and is not a directory")
    check_parents(output_dir)
    base_dir = resolve_base_model(base if base is not None else adapter_base(adapter_dir))
    refuse_inputs_within(output_dir, _inputs(adapter_dir, base, base_dir))
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise TrainingError(f"output {output_dir} is not empty; pass --overwrite to replace it")
    merged, tokenizer = merged_model(adapter_dir, base_dir)
    _save_atomically(merged, tokenizer, base_dir, output_dir)
    return output_dir


def merged_model(adapter_dir: Path, base_dir: Path) -> tuple[Any, Any]:
    """The base with the adapter folded in (float32, in memory) and the tokenizer to go with it."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    from ragtune.runtime import configure_torch_threads

    configure_torch_threads()
    transformers_logging.disable_progress_bar()  # the CLI shows its own status line
    read_adapter_config(adapter_dir)  # a clear error before transformers' own
    check_adapter_weights(adapter_dir)
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(
            base_dir, dtype=torch.float32, use_safetensors=True, trust_remote_code=False
        )
    except Exception as error:  # OSError, ValueError, safetensors errors alike
        raise ModelNotFoundError(
            f"cannot load the base model {base_dir}: {one_line(error)}"
        ) from None
    try:
        with warnings.catch_warnings():  # peft 0.21 on transformers 5: a deprecation
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
            model = PeftModel.from_pretrained(model, str(adapter_dir))
        merged = model.merge_and_unload()
    except Exception as error:  # shape mismatch with the base, unsupported adapter type, ...
        raise TrainingError(
            f"cannot apply the adapter {adapter_dir} to {base_dir}: {one_line(error)}"
        ) from None
    tokenizer_dir = adapter_dir if _has_tokenizer(adapter_dir) else base_dir
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    except Exception as error:  # a tokenizer that asks for its own code, a damaged file
        raise ModelNotFoundError(
            f"cannot load the tokenizer in {tokenizer_dir}: {one_line(error)}"
        ) from None
    return merged.eval(), tokenizer


def _inputs(adapter_dir: Path, base: str | Path | None, base_dir: Path) -> list[tuple[str, Path]]:
    """What a merge reads, a GGUF base (converted into the cache) and its record included."""
    named = [("adapter", adapter_dir), ("base model", base_dir)]
    for label, path in (("base model", spec_path(base)), ("base's GGUF", recorded_gguf(base_dir))):
        if path is not None:
            named.append((label, path))
    return named


def _save_atomically(merged: Any, tokenizer: Any, base_dir: Path, output_dir: Path) -> None:
    """The merged model, written aside and put in place whole: the output holds either the
    old model or the new one, never a mixture."""
    parent = output_dir.parent
    try:
        staging = StagedDirectory(output_dir)
    except OSError as error:
        raise TrainingError(f"cannot write into {parent}: {error.strerror or error}") from None
    from safetensors import SafetensorError

    try:
        with staging as scratch:
            merged.save_pretrained(scratch)
            tokenizer.save_pretrained(scratch)
            if (base_dir / SOURCE_FILE).is_file():  # lets the GGUF exporter reuse its tokenizer
                shutil.copy2(base_dir / SOURCE_FILE, scratch / SOURCE_FILE)
    except (OSError, SafetensorError) as error:
        # safetensors reports a full disk as its own error, "... (os error 28)", not OSError.
        reason = "disk full" if is_disk_full(error) else one_line(error)
        raise TrainingError(f"cannot save the merged model to {output_dir}: {reason}") from None


def _has_tokenizer(directory: Path) -> bool:
    return any((directory / name).is_file() for name in _TOKENIZER_FILES)
