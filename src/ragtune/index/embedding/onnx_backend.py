"""A faster CPU path: the transformer exported to ONNX once, run by ONNX Runtime.

Why not sentence-transformers' own ``backend="onnx"``: it goes through
optimum-onnx, whose only release (0.1.0) needs transformers < 4.58, while
sentence-transformers 6 needs transformers 5. So ragtune exports the
transformer itself with ``torch.onnx.export`` (offline, from the local
directory), quantizes it with ONNX Runtime's dynamic int8 quantization, and
pools and normalises in NumPy exactly as sentence-transformers does.

The export is cached under ``$RAGTUNE_CACHE_DIR/onnx/<model>-<fingerprint>-<variant>/``
(default ``~/.cache/ragtune``), keyed by a hash of the model's configuration,
tokenizer and weights. It is written to a temporary directory and renamed into
place, so a killed export never leaves a half-written cache; a cache that fails
to load is moved aside and rebuilt once.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import re
import secrets
import shutil
import time
import warnings
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragtune import runtime
from ragtune.atomic import write_json_atomic
from ragtune.errors import ModelNotFoundError, RagtuneError, first_line
from ragtune.index.embedding.base import normalise, read_model_json
from ragtune.runtime import configure_torch_threads

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Encoding, Tokenizer

log = logging.getLogger(__name__)

# Bump when the exported graph or the cache layout changes: old caches are then ignored.
EXPORT_FORMAT = 1
OPSET = 17
VARIANTS = ("fp32", "int8")
_META = "export.json"
_FILES = {"fp32": "model.onnx", "int8": "model_int8.onnx"}
_STALE_TEMP_S = 3600
# What a person sees (the CLI prints this module's INFO records) before an export starts.
PREPARING = "preparing the embedding model %s once (~20 s)..."

# Exports done by this process; tests read it to prove a cache was reused.
export_count = 0


def cache_root() -> Path:
    return runtime.cache_dir("onnx")


@dataclass(frozen=True)
class SentenceModelLayout:
    """The parts of a sentence-transformers directory the ONNX path reproduces."""

    root: Path
    transformer_dir: Path
    pooling: str  # "mean", "cls", "max" or "lasttoken"
    max_tokens: int

    @classmethod
    def read(cls, root: Path, max_tokens: int) -> SentenceModelLayout:
        modules_file = root / "modules.json"
        if not modules_file.exists():  # a plain transformers directory: mean pooling
            return cls(root, root, "mean", max_tokens)
        modules = read_model_json(modules_file)
        if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
            raise ModelNotFoundError(f"{modules_file} is not a list of modules")
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        if (
            not kinds
            or kinds[0] != "Transformer"
            or any(kind not in ("Pooling", "Normalize") for kind in kinds[1:])
        ):
            raise ModelNotFoundError(
                f"{root}: the onnx backends support Transformer + Pooling (+ Normalize) models "
                f"only, this one has {' + '.join(kinds)}; use backend 'torch'"
            )
        transformer_dir = root / str(modules[0].get("path", ""))
        pooling = "mean"
        for module, kind in zip(modules, kinds, strict=True):
            if kind == "Pooling":
                pooling = _pooling_mode(root / str(module.get("path", "")))
        return cls(root, transformer_dir, pooling, max_tokens)


def _pooling_mode(directory: Path) -> str:
    config_file = directory / "config.json"
    if not config_file.exists():
        return "mean"
    config = read_model_json(config_file)
    if not isinstance(config, dict):
        raise ModelNotFoundError(f"{config_file} is not a JSON object")
    modes = [
        mode
        for key, mode in (
            ("pooling_mode_mean_tokens", "mean"),
            ("pooling_mode_cls_token", "cls"),
            ("pooling_mode_max_tokens", "max"),
            ("pooling_mode_lasttoken", "lasttoken"),
        )
        if config.get(key)
    ]
    others = [k for k, v in config.items() if k.startswith("pooling_mode_") and v]
    if len(modes) != 1 or len(others) != 1:
        raise ModelNotFoundError(
            f"{directory}: pooling {', '.join(others) or 'none'} is not supported by the onnx "
            "backends; use backend 'torch'"
        )
    return modes[0]


_FINGERPRINTS: dict[str, str] = {}
# Hashing MiniLM's 90 MB took 70 ms at the start of every command that embeds, so the
# digests are also remembered on disk, keyed by each file's size, mtime and ctime (a
# ctime cannot be set back: replaced weights never match an old entry).
_MEMO_FILE = "fingerprints.json"
_MEMO_ENTRIES = 64


def fingerprint(layout: SentenceModelLayout) -> str:
    """A hash of the configuration, tokenizer and weight files (memoised by their stats)."""
    files = _fingerprinted_files(layout)
    stats = [(str(p), s.st_size, s.st_mtime_ns, s.st_ctime_ns) for p in files for s in [p.stat()]]
    identity = (EXPORT_FORMAT, layout.max_tokens, str(layout.root.resolve()), stats)
    key = hashlib.sha256(repr(identity).encode()).hexdigest()
    if key not in _FINGERPRINTS:
        memo = _read_memo()
        if key not in memo:
            memo[key] = _digest(layout, files)
            _write_memo(memo)
        _FINGERPRINTS[key] = memo[key]
    return _FINGERPRINTS[key]


def _digest(layout: SentenceModelLayout, files: list[Path]) -> str:
    digest = hashlib.sha256(f"ragtune-onnx-{EXPORT_FORMAT}-{layout.max_tokens}".encode())
    for path in files:
        digest.update(str(path.relative_to(layout.root)).encode())
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()[:16]


def _read_memo() -> dict[str, str]:
    try:
        data = json.loads((cache_root() / _MEMO_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _write_memo(memo: dict[str, str]) -> None:
    """Best effort: a cache that cannot be written only costs the hashing next time."""
    newest = dict(list(memo.items())[-_MEMO_ENTRIES:])
    with suppress(OSError, RagtuneError):
        write_json_atomic(cache_root() / _MEMO_FILE, newest)


def _fingerprinted_files(layout: SentenceModelLayout) -> list[Path]:
    names = (
        "config.json",
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
        "1_Pooling/config.json",
        "model.safetensors",
        "pytorch_model.bin",
    )
    files = sorted(
        {
            p
            for name in names
            for p in (layout.root / name, layout.transformer_dir / name)
            if p.is_file()
        }
    )
    return files + sorted(layout.transformer_dir.glob("model-*.safetensors"))


def cache_dir(layout: SentenceModelLayout, name: str, variant: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
    return cache_root() / f"{safe}-{fingerprint(layout)}-{variant}"


def ensure_export(layout: SentenceModelLayout, name: str, variant: str) -> Path:
    """The cached ONNX file for this model and variant, exported first if missing or broken.

    An export is announced at INFO on this module's logger before it starts (the CLI
    prints it): it takes about 20 s of silence, once, which otherwise reads as a hang.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown ONNX variant {variant!r}")
    directory = cache_dir(layout, name, variant)
    if _valid(directory, variant):
        return directory / _FILES[variant]
    return _build(layout, name, variant, directory, announce=True)


def _build(
    layout: SentenceModelLayout, name: str, variant: str, directory: Path, announce: bool
) -> Path:
    """Export (fp32) or quantize (int8, from the fp32 export) into ``directory``."""
    if directory.exists():
        _discard(directory)
    _sweep_stale_temporaries(directory.parent)
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        # Not mkdtemp, which makes it 0o700 whatever the umask says: the cache
        # follows the umask, like every other file ragtune writes.
        scratch = directory.parent / f".tmp-{directory.name}-{secrets.token_hex(6)}"
        scratch.mkdir()
    except OSError as error:
        raise ModelNotFoundError(
            f"cannot write the ONNX cache in {directory.parent} ({error.strerror or error}); "
            "set RAGTUNE_CACHE_DIR to a writable directory"
        ) from None
    if announce:  # once the cache is known to be writable: a failure stays one line
        log.info(PREPARING, name)
    try:
        target = scratch / _FILES[variant]
        if variant == "fp32":
            inputs = _export(layout, target)
        else:
            fp32 = cache_dir(layout, name, "fp32")
            source = fp32 / _FILES["fp32"]
            if not _valid(fp32, "fp32"):  # part of this variant's export, announced above
                source = _build(layout, name, "fp32", fp32, announce=False)
            inputs = _read_meta(source.parent)["inputs"]
            _quantize(source, target)
        meta = {
            "format": EXPORT_FORMAT,
            "variant": variant,
            "source": str(layout.root),
            "fingerprint": fingerprint(layout),
            "file": target.name,
            "bytes": target.stat().st_size,
            "inputs": inputs,
            "opset": OPSET,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (scratch / _META).write_text(json.dumps(meta, indent=2))
        try:
            os.rename(scratch, directory)
        except OSError:
            if not _valid(directory, variant):  # not another process that finished first
                raise
    except OSError as error:
        raise ModelNotFoundError(
            f"cannot write the ONNX cache {directory} ({error.strerror or error})"
        ) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return directory / _FILES[variant]


def discard_cache(model_file: Path) -> None:
    """Move a cache directory aside and delete it (after it failed to load)."""
    _discard(model_file.parent)


def _read_meta(directory: Path) -> dict[str, Any]:
    data = json.loads((directory / _META).read_text())
    if not isinstance(data, dict):
        raise ValueError("export.json is not an object")
    return data


def _valid(directory: Path, variant: str) -> bool:
    try:
        meta = _read_meta(directory)
        model = directory / _FILES[variant]
        return (
            meta.get("format") == EXPORT_FORMAT
            and meta.get("variant") == variant
            and model.is_file()
            and model.stat().st_size == meta.get("bytes")
            and isinstance(meta.get("inputs"), list)
        )
    except (OSError, ValueError):
        return False


def _discard(directory: Path) -> None:
    aside = directory.with_name(f".tmp-broken-{directory.name}-{os.getpid()}")
    try:
        os.rename(directory, aside)
    except OSError:
        return
    log.warning("discarding the broken ONNX cache %s", directory)
    shutil.rmtree(aside, ignore_errors=True)


def _sweep_stale_temporaries(root: Path) -> None:
    """Leftovers of exports killed part-way (older than an hour, so not one in progress)."""
    if not root.is_dir():
        return
    now = time.time()
    for leftover in root.glob(".tmp-*"):
        try:
            if now - leftover.stat().st_mtime > _STALE_TEMP_S:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass


def _export(layout: SentenceModelLayout, target: Path) -> list[str]:
    """torch.onnx.export of the bare transformer; returns the graph's input names."""
    global export_count
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers
    from transformers import AutoModel

    transformers.logging.disable_progress_bar()
    configure_torch_threads()
    try:
        model = AutoModel.from_pretrained(
            str(layout.transformer_dir),
            attn_implementation="eager",
            local_files_only=True,
            use_safetensors=True,
            trust_remote_code=False,
        ).eval()
    except Exception as error:  # transformers and torch raise many types on a damaged model
        raise ModelNotFoundError(
            f"cannot load {layout.transformer_dir} for export: {first_line(error)}"
        ) from None

    tokenizer = _batch_tokenizer(layout)
    samples = _pad(tokenizer.encode_batch(["a short one", "a somewhat longer text"]))
    accepted = inspect.signature(model.forward).parameters
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, tensors, strict=True))).last_hidden_state

    wrapper = LastHiddenState(model).eval()
    tensors = tuple(torch.from_numpy(samples[n]) for n in names)
    with torch.no_grad():
        expected = wrapper(*tensors).numpy()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                wrapper,
                tensors,
                str(target),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
                opset_version=OPSET,
                dynamo=False,
            )
        except Exception as error:  # the exporter raises many types, all fatal here
            raise ModelNotFoundError(
                f"cannot export {layout.root} to ONNX: {first_line(error)}; use backend 'torch'"
            ) from None
    export_count += 1
    # The graph must reproduce the model, or the whole index would drift silently.
    try:
        got = _session(target, threads=1).run(None, {n: samples[n] for n in names})[0]
    except Exception as error:  # onnxruntime raises its own exception types
        raise ModelNotFoundError(
            f"the ONNX export of {layout.root} cannot be run: {first_line(error)}"
        ) from None
    mask = samples["attention_mask"].astype(bool)
    drift = float(np.abs(got - expected)[mask].max())
    if drift > 1e-3:
        raise ModelNotFoundError(
            f"the ONNX export of {layout.root} differs from the model by {drift:.3g}; "
            "use backend 'torch'"
        )
    return names


def _quantize(source: Path, target: Path) -> None:
    """Dynamic int8: weights per channel (0.99+ cosine to fp32 on MiniLM, per tensor gave 0.91)."""
    global export_count
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root_level = logging.root.level  # ORT advises "pre-processing" through the root logger
    logging.root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.root.setLevel(root_level)
    export_count += 1


def _session(model_file: Path, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(
        str(model_file), options, providers=["CPUExecutionProvider"]
    )


def _batch_tokenizer(layout: SentenceModelLayout) -> Tokenizer:
    from tokenizers import Tokenizer

    path = layout.transformer_dir / "tokenizer.json"
    if not path.exists():
        path = layout.root / "tokenizer.json"
    if not path.exists():
        raise ModelNotFoundError(f"{layout.root}: the onnx backends need a tokenizer.json")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception for a malformed file
        raise ModelNotFoundError(f"cannot read the tokenizer {path}: {first_line(error)}") from None
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=layout.max_tokens)
    return tokenizer


def _pad(encodings: list[Encoding]) -> dict[str, np.ndarray]:
    width = max(len(e.ids) for e in encodings)
    out = {
        name: np.zeros((len(encodings), width), dtype=np.int64)
        for name in ("input_ids", "attention_mask", "token_type_ids")
    }
    for row, encoding in enumerate(encodings):
        n = len(encoding.ids)
        out["input_ids"][row, :n] = encoding.ids
        out["attention_mask"][row, :n] = encoding.attention_mask
        out["token_type_ids"][row, :n] = encoding.type_ids
    return out


class OnnxEncoder:
    """Tokenize, run the ONNX graph in length-sorted batches, pool, normalise."""

    def __init__(self, layout: SentenceModelLayout, name: str, variant: str, threads: int) -> None:
        self.layout = layout
        self.variant = variant
        self.model_file = ensure_export(layout, name, variant)
        try:
            self.session = _session(self.model_file, threads)
        except Exception as error:  # onnxruntime raises its own exception types
            log.warning("cannot load %s (%s); exporting it again", self.model_file, error)
            discard_cache(self.model_file)
            self.model_file = ensure_export(layout, name, variant)
            try:
                self.session = _session(self.model_file, threads)
            except Exception as again:
                raise ModelNotFoundError(
                    f"cannot load the ONNX model {self.model_file}: {first_line(again)}"
                ) from None
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.tokenizer = _batch_tokenizer(layout)

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        encodings = self.tokenizer.encode_batch([text.strip() for text in texts])
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")[::-1]
        dimensions = 0
        rows: list[tuple[np.ndarray, np.ndarray]] = []
        for start in range(0, len(order), batch_size):
            picked = order[start : start + batch_size]
            feed = _pad([encodings[i] for i in picked])
            hidden = self.session.run(None, {n: feed[n] for n in self.inputs})[0]
            pooled = _pool(hidden, feed["attention_mask"], self.layout.pooling)
            dimensions = pooled.shape[1]
            rows.append((picked, pooled))
        out = np.zeros((len(texts), dimensions), dtype=np.float32)
        for picked, pooled in rows:
            out[picked] = pooled
        return normalise(out)


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    weights = mask[..., None].astype(np.float32)
    if mode == "mean":
        return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return np.where(weights > 0, hidden, np.float32(-1e9)).max(axis=1)
    last = mask.sum(axis=1) - 1  # "lasttoken", right-padded batches
    return hidden[np.arange(len(hidden)), last]
