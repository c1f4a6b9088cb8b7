"""The base model a fine-tune starts from, as a plain Hugging Face directory.

Training wants ``config.json`` + safetensors + a tokenizer with a chat template. The bundled
SmolLM2 is a Q4_1 GGUF file: transformers can read it, but in 5.x the loaded model is flagged
as quantized, so training and ``save_pretrained`` refuse. It is therefore converted once, its
weights copied into a plain float32 model, and cached under
``$RAGTUNE_CACHE_DIR/models/<stem>-<sha256[:12]>/`` (default ``~/.cache/ragtune``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import mmap
import re
import shutil
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ragtune.atomic import StagedDirectory, discard_leftovers
from ragtune.errors import ModelNotFoundError, is_disk_full, one_line
from ragtune.runtime import cache_dir

DEFAULT_NAMES = ("smollm2", "default")
SOURCE_FILE = "ragtune_source.json"  # the GGUF a converted directory came from
GGUF_MAGIC = b"GGUF"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
# Pickles, which can run code when loaded: ragtune reads weights from safetensors only.
_PICKLED_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
_HASH_BLOCK = 1 << 20


def resolve_base_model(spec: str | Path | None) -> Path:
    """A local Hugging Face model directory for ``spec``, converting a GGUF file once if needed.

    ``None``, ``"smollm2"`` or ``"default"``: the bundled SmolLM2. A path ending in ``.gguf``
    (or ``gguf:PATH``): that file, converted and cached. A directory: checked and returned.
    """
    path = spec_path(spec)
    if path is None:
        from ragtune.assets import DEFAULT_LLM

        return converted_gguf(DEFAULT_LLM.require())
    text = str(spec).strip()
    if text.lower().startswith("gguf:") or path.suffix.lower() == ".gguf":
        return converted_gguf(path)
    if not path.exists():
        if _looks_like_hub_id(text):
            raise ModelNotFoundError(
                f"base model {text} is not a local directory; ragtune works offline, so give "
                "a model directory (config.json + weights + tokenizer) or a .gguf file"
            )
        raise ModelNotFoundError(f"base model {path} does not exist")
    check_model_dir(path)
    return path


def spec_path(spec: str | Path | None) -> Path | None:
    """The file or directory a base model spec names; None for the bundled SmolLM2."""
    if spec is None or str(spec).strip().lower() in DEFAULT_NAMES:
        return None
    text = str(spec).strip()
    if text.lower().startswith("gguf:"):
        text = text[5:]
    return Path(text).expanduser()


def recorded_gguf(model_dir: Path) -> Path | None:
    """The GGUF file a converted directory came from, as its ``ragtune_source.json`` says."""
    try:
        record = json.loads((model_dir / SOURCE_FILE).read_text(encoding="utf-8"))
        return Path(record["gguf"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def check_model_dir(path: Path) -> None:
    """Raise ModelNotFoundError unless ``path`` holds config.json, weights and a tokenizer."""
    if not path.is_dir():
        raise ModelNotFoundError(f"base model {path} is not a directory or a .gguf file")
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"base model {path} has no config.json")
    if not _has_weights(path):
        pickled = [name for name in _PICKLED_WEIGHT_FILES if (path / name).is_file()]
        if pickled:
            raise ModelNotFoundError(
                f"base model {path} has its weights in {pickled[0]}, a pickle that can run code "
                "when loaded; ragtune reads safetensors only: convert them to model.safetensors"
            )
        raise ModelNotFoundError(f"base model {path} has no weights (*.safetensors)")
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise ModelNotFoundError(f"base model {path} has no tokenizer (tokenizer.json)")


def cache_root() -> Path:
    return cache_dir("models")


def converted_gguf(gguf_file: Path) -> Path:
    """The cached plain-weights directory for ``gguf_file``, converting it on first use.

    A file lock makes concurrent callers (data-parallel training starts several processes
    at once) convert only once; the others wait and then find the finished directory.
    """
    check_gguf_header(gguf_file)
    digest = file_sha256(gguf_file)
    target = converted_path(gguf_file, digest)
    if _is_complete(target):
        return target
    # Parsing the whole header takes seconds on SmolLM2's 49k-token vocabulary, so it is
    # done only before a conversion; a cache hit was made from a file that passed it.
    check_gguf_tensors(gguf_file)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ModelNotFoundError(
            f"cannot create the model cache {target.parent} ({error.strerror or error}); "
            "set RAGTUNE_CACHE_DIR to a writable directory"
        ) from None
    with _locked(target.parent / f".{target.name}.lock"):
        if _is_complete(target):  # another process converted it while this one waited
            return target
        _convert_into_place(gguf_file, digest, target)
    return target


def converted_path(gguf_file: Path, digest: str | None = None) -> Path:
    """Where the conversion of ``gguf_file`` is cached, whether or not it exists yet."""
    digest = digest or file_sha256(gguf_file)
    return cache_root() / f"{_safe(gguf_file.stem)}-{digest[:12]}"


def check_gguf_header(path: Path) -> None:
    """Raise ModelNotFoundError unless ``path`` starts like a GGUF file and is long enough."""
    if not path.exists():
        raise ModelNotFoundError(f"GGUF model {path} does not exist")
    if not path.is_file():
        raise ModelNotFoundError(f"GGUF model {path} is not a file")
    size = path.stat().st_size
    with path.open("rb") as handle:
        header = handle.read(24)
    if header[:4] != GGUF_MAGIC:
        raise ModelNotFoundError(f"{path} is not a GGUF file (no GGUF magic bytes)")
    if len(header) < 24:
        raise ModelNotFoundError(f"GGUF model {path} is truncated ({size} bytes)")
    # The tensor data follows the header; a file cut short cannot hold even one tensor
    # per entry, which catches a download or copy that stopped early without parsing it all.
    tensor_count = struct.unpack("<Q", header[8:16])[0]
    if tensor_count == 0 or size < 24 + 32 * tensor_count:
        raise ModelNotFoundError(f"GGUF model {path} is truncated ({size} bytes)")


def file_sha256(path: Path) -> str:
    # Hashing the 98 MB SmolLM2 file takes about 0.2 s here: cheap next to a stale cache
    # keyed on (size, mtime), which a file rewritten in place would fool.
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def check_gguf_tensors(path: Path) -> None:
    """Walk the header and tensor index, so a truncated file fails here with its name.

    gguf.GGUFReader would do, but it takes 2 s on SmolLM2's 49k-token vocabulary; this
    walk only skips over the values and takes a tenth of that.
    """
    size = path.stat().st_size
    try:
        with (
            path.open("rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data,
        ):
            data_end = _gguf_data_end(data)
    except (struct.error, ValueError, KeyError, OverflowError):
        raise ModelNotFoundError(
            f"GGUF model {path} is truncated or damaged (its header ends early or is malformed)"
        ) from None
    if data_end > size:
        raise ModelNotFoundError(
            f"GGUF model {path} is truncated ({size} bytes; its tensors need {data_end})"
        )


# GGUF value types with a fixed size (gguf.GGUFValueType): uint8 .. float64, bool.
_FIXED_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


def _gguf_data_end(data: mmap.mmap) -> int:
    """The offset one past the last tensor's bytes, as the header declares it."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    tensor_count, kv_count = struct.unpack_from("<QQ", data, 8)
    offset, alignment = 24, 32
    for _ in range(kv_count):
        key, offset = _gguf_string(data, offset)
        (kind,) = struct.unpack_from("<I", data, offset)
        if key == b"general.alignment":
            (alignment,) = struct.unpack_from("<I", data, offset + 4)
        offset = _skip_value(data, offset + 4, kind)
    last_end = 0
    for _ in range(tensor_count):
        _, offset = _gguf_string(data, offset)
        (n_dims,) = struct.unpack_from("<I", data, offset)
        dims = struct.unpack_from(f"<{n_dims}Q", data, offset + 4)
        kind, start = struct.unpack_from("<IQ", data, offset + 4 + 8 * n_dims)
        offset += 4 + 8 * n_dims + 12
        block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        elements = 1
        for dim in dims:
            elements *= dim
        last_end = max(last_end, start + elements // block * block_bytes)
    data_start = -(-offset // alignment) * alignment
    return data_start + last_end


def _gguf_string(data: mmap.mmap, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from("<Q", data, offset)
    end = offset + 8 + length
    if end > len(data):
        raise ValueError("a string runs past the end of the file")
    return data[offset + 8 : end], end


def _skip_value(data: mmap.mmap, offset: int, kind: int) -> int:
    if kind in _FIXED_SIZES:
        return offset + _FIXED_SIZES[kind]
    if kind == _STRING:
        return _gguf_string(data, offset)[1]
    if kind == _ARRAY:
        item_kind, count = struct.unpack_from("<IQ", data, offset)
        offset += 12
        if item_kind in _FIXED_SIZES:
            return offset + count * _FIXED_SIZES[item_kind]
        for _ in range(count):
            offset = _skip_value(data, offset, item_kind)
        return offset
    raise ValueError(f"unknown metadata value type {kind}")


def _convert_into_place(gguf_file: Path, digest: str, target: Path) -> None:
    from rich.console import Console
    from rich.text import Text
    from safetensors import SafetensorError

    if target.exists():  # a partial or damaged directory: rebuild it
        shutil.rmtree(target, ignore_errors=True)
    # Only the lock holder writes these, so any left over are from a process that died.
    discard_leftovers(target.parent, target.name)
    staging = StagedDirectory(target)
    try:
        with staging as scratch:
            # Bound to the real stderr now: _convert silences sys.stderr while transformers runs.
            console = Console(file=sys.stderr)
            with console.status(  # Text: a "[" in a path is not Rich markup
                Text(f"Converting {gguf_file.name} to plain weights, once; cached at {target}")
            ):
                _convert(gguf_file, scratch)
                (scratch / SOURCE_FILE).write_text(
                    json.dumps({"gguf": str(gguf_file.resolve()), "sha256": digest}, indent=2)
                )
    except (OSError, SafetensorError) as error:
        reason = "disk full" if is_disk_full(error) else one_line(error)
        raise ModelNotFoundError(
            f"cannot write the converted model to {target.parent}: {reason}"
        ) from None


def _convert(gguf_file: Path, where: Path) -> None:
    """Dequantise ``gguf_file`` through transformers and save it as a plain float32 model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    from ragtune.runtime import configure_torch_threads

    configure_torch_threads()
    transformers_logging.disable_progress_bar()  # the Rich status line says what is happening
    try:
        # transformers' GGUF reader draws its own tqdm bar on sys.stderr, which no logging
        # switch turns off; it would tear through the Rich status line.
        with contextlib.redirect_stderr(io.StringIO()):
            tokenizer = AutoTokenizer.from_pretrained(
                gguf_file.parent, gguf_file=gguf_file.name, trust_remote_code=False
            )
            loaded: Any = AutoModelForCausalLM.from_pretrained(
                gguf_file.parent,
                gguf_file=gguf_file.name,
                dtype=torch.float32,
                trust_remote_code=False,
            )
    except Exception as error:  # unsupported architecture, bad tensors, ...
        raise ModelNotFoundError(
            f"transformers cannot load the GGUF model {gguf_file}: {one_line(error)}"
        ) from None
    config = loaded.config
    # The GGUF loader marks the config as quantized; a plain model must not carry that.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain: Any = type(loaded)(config)  # LlamaForCausalLM for SmolLM2, unflagged
    plain.load_state_dict(loaded.state_dict())
    plain.to(torch.float32)
    del loaded
    plain.save_pretrained(where)
    tokenizer.save_pretrained(where)


def _is_complete(directory: Path) -> bool:
    return (
        (directory / "config.json").is_file()
        and _has_weights(directory)
        and (directory / SOURCE_FILE).is_file()
    )


def _has_weights(directory: Path) -> bool:
    if any((directory / name).is_file() for name in _WEIGHT_FILES):
        return True
    return any(directory.glob("model-*.safetensors"))


@contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _looks_like_hub_id(text: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text) is not None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
