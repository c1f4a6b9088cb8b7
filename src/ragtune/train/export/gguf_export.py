"""Write a Llama-architecture Hugging Face model as a GGUF file llama.cpp loads.

This follows llama.cpp's own ``convert_hf_to_gguf.py`` for ``LlamaForCausalLM``: the same
tensor names (through ``gguf.TensorNameMap``), the q/k row permutation, the same
hyperparameter keys, 1-D tensors kept in float32, and a float16 fallback for rows that
Q8_0's 32-wide blocks do not divide.

Tokenizer metadata comes, in order of preference, from:

1. the GGUF the model was converted from (``ragtune_source.json``), copied verbatim when its
   vocabulary is the model's, which is exactly what llama.cpp already tokenizes with;
2. ``tokenizer.json``, for byte-level BPE tokenizers (GPT-2 style: SmolLM/SmolLM2, GPT-2,
   Llama 3) whose pre-tokenizer maps to one llama.cpp names. SentencePiece tokenizers
   (Llama 2, TinyLlama: ``tokenizer.model``), WordPiece and Unigram are not supported.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.atomic import StagedFile
from ragtune.errors import ModelNotFoundError, TrainingError, is_disk_full
from ragtune.llm.adapters import is_adapter_dir
from ragtune.train.models.base_model import check_model_dir, recorded_gguf
from ragtune.train.outputs import check_parents, refuse_existing, within

FORMATS = ("f32", "f16", "q8_0")
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)
Progress = Callable[[int, int], None]  # (tensors written, tensors in all)

# llama.cpp's regex for Llama 3's pre-tokenizer, as tokenizer.json spells it.
_LLAMA3_SPLIT = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)


@dataclass(frozen=True)
class _Planned:
    """One tensor as it will be written: GGUF name, HF name, type and logical shape."""

    gguf_name: str
    hf_name: str
    qtype: Any  # gguf.GGMLQuantizationType
    shape: tuple[int, ...]


def export_gguf(
    model_dir: Path,
    output: Path,
    fmt: str = "f16",
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Write the model in ``model_dir`` (or a PEFT adapter dir, merged first) to ``output``.

    ``fmt`` is f32, f16 or q8_0. The file appears at ``output`` only once it is complete. An
    existing ``output`` is replaced only with ``overwrite``, and never when it is one of the
    files the export reads.
    """
    import gguf

    model_dir = Path(model_dir).expanduser()
    output = Path(output).expanduser()
    if fmt not in FORMATS:
        raise TrainingError(f"unknown GGUF type {fmt!r}; choose one of {', '.join(FORMATS)}")
    if output.is_dir():
        raise TrainingError(f"output {output} is a directory; give a file name ending in .gguf")
    check_parents(output)
    directories = _model_dirs(model_dir)
    _refuse_replacing_inputs(output, directories)
    refuse_existing(output, overwrite)
    source = _open_model(model_dir, directories[-1])
    config = source.config
    _check_architecture(config, model_dir)
    plan = _plan(source, config, fmt)
    writer = gguf.GGUFWriter(None, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    _add_hyperparameters(writer, config, fmt, model_dir)
    _add_tokenizer(writer, source.tokenizer_dir, source.origin_dir, _vocab_size(config))
    for item in plan:
        writer.add_tensor_info(
            item.gguf_name, item.shape, np.dtype(np.float32), _nbytes(item), raw_dtype=item.qtype
        )
    _write_atomically(writer, plan, source, config, output, progress)
    return output


# ----------------------------------------------------------------------------- the model


class _Source:
    """Where the tensors, config and tokenizer come from: a model dir, or an adapter merged."""

    def __init__(self, config: dict[str, Any], tokenizer_dir: Path, origin_dir: Path) -> None:
        self.config = config
        self.tokenizer_dir = tokenizer_dir
        self.origin_dir = origin_dir  # the directory that may hold ragtune_source.json

    def shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def tensor(self, name: str) -> np.ndarray:
        raise NotImplementedError


class _SafetensorsSource(_Source):
    """Tensors read one at a time from the safetensors files, so memory stays small."""

    def __init__(self, model_dir: Path, config: dict[str, Any]) -> None:
        super().__init__(config, model_dir, model_dir)
        self.files = _safetensors_files(model_dir)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        from safetensors import safe_open

        found: dict[str, tuple[int, ...]] = {}
        for file in self.files:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    found[name] = tuple(handle.get_slice(name).get_shape())
        return found

    def tensor(self, name: str) -> np.ndarray:
        from safetensors import safe_open

        for file in self.files:
            with safe_open(str(file), framework="pt") as handle:
                if name in handle.keys():  # noqa: SIM118
                    return np.asarray(handle.get_tensor(name).float().numpy())
        raise KeyError(name)


class _MergedSource(_Source):
    """A PEFT adapter folded into its base in memory (nothing is written besides the GGUF)."""

    def __init__(self, adapter_dir: Path, base_dir: Path) -> None:
        from ragtune.train.export.merge import merged_model

        model, _ = merged_model(adapter_dir, base_dir)
        self.state = {name: tensor.detach() for name, tensor in model.state_dict().items()}
        tokenizer_dir = adapter_dir if (adapter_dir / "tokenizer.json").is_file() else base_dir
        super().__init__(model.config.to_dict(), tokenizer_dir, base_dir)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(tensor.shape) for name, tensor in self.state.items()}

    def tensor(self, name: str) -> np.ndarray:
        return np.asarray(self.state[name].float().numpy())


def _model_dirs(model_dir: Path) -> list[Path]:
    """The directories whose files the export reads; the last is the model's origin (the
    adapter's base), which may record the GGUF it was converted from."""
    if not model_dir.exists():
        raise ModelNotFoundError(f"model {model_dir} does not exist")
    if is_adapter_dir(model_dir):
        from ragtune.llm.adapters import adapter_base
        from ragtune.train.models.base_model import resolve_base_model

        return [model_dir, resolve_base_model(adapter_base(model_dir))]
    check_model_dir(model_dir)
    return [model_dir]


def _refuse_replacing_inputs(output: Path, directories: list[Path]) -> None:
    """The GGUF is renamed over whatever ``output`` names: never a file the export reads.

    An earlier GGUF in the model directory may be replaced (with --overwrite), unless it is
    the one the model was converted from.
    """
    source = recorded_gguf(directories[-1])
    # The name that is replaced, and where it leads when it is a symlink.
    for path in (Path(os.path.realpath(output.parent)) / output.name, output.resolve()):
        if not os.path.lexists(path):
            continue
        if source is not None and _same_file(path, source):
            raise TrainingError(
                f"output {output} is the GGUF file the model was converted from ({source}); "
                "choose another output"
            )
        for directory in directories:
            if within(path, directory) and not _is_gguf(path):
                raise TrainingError(
                    f"output {output} would replace {path.name} in the model directory "
                    f"{directory} that the export reads; choose another output"
                )


def _same_file(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == b"GGUF"
    except OSError:
        return False


def _open_model(model_dir: Path, origin_dir: Path) -> _Source:
    if is_adapter_dir(model_dir):
        return _MergedSource(model_dir, origin_dir)
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise ModelNotFoundError(f"cannot read {model_dir / 'config.json'}: {error}") from None
    return _SafetensorsSource(model_dir, config)


def _safetensors_files(model_dir: Path) -> list[Path]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ModelNotFoundError(f"model {model_dir} has no safetensors weights")
    return files


def _check_architecture(config: dict[str, Any], model_dir: Path) -> None:
    architectures = config.get("architectures") or [config.get("model_type", "unknown")]
    architecture = str(architectures[0])
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise TrainingError(
            f"{model_dir}: GGUF export supports {', '.join(SUPPORTED_ARCHITECTURES)}, "
            f"not {architecture}"
        )
    rope = _rope_settings(config)
    if rope.get("rope_type", "default") not in ("default", "linear"):
        raise TrainingError(
            f"{model_dir}: GGUF export does not support {rope['rope_type']!r} RoPE scaling"
        )


# ----------------------------------------------------------------------------- tensors


def _plan(source: _Source, config: dict[str, Any], fmt: str) -> list[_Planned]:
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, int(config["num_hidden_layers"]))
    tied = bool(config.get("tie_word_embeddings", False))
    plan = []
    for hf_name, shape in source.shapes().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd.weight when output.weight is absent
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue  # recomputed by llama.cpp from rope_freq_base
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise TrainingError(f"GGUF export: no llama.cpp name for the tensor {hf_name}")
        plan.append(_Planned(gguf_name, hf_name, _tensor_type(shape, fmt), shape))
    return plan


def _tensor_type(shape: tuple[int, ...], fmt: str) -> Any:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    if fmt == "f32" or len(shape) <= 1:
        return GGMLQuantizationType.F32  # norms and biases: tiny, and precision-sensitive
    if fmt == "f16":
        return GGMLQuantizationType.F16
    block = GGML_QUANT_SIZES[GGMLQuantizationType.Q8_0][0]
    # As llama.cpp's converter: a row Q8_0's blocks do not divide falls back to f16.
    return GGMLQuantizationType.Q8_0 if shape[-1] % block == 0 else GGMLQuantizationType.F16


def _nbytes(item: _Planned) -> int:
    from gguf import GGML_QUANT_SIZES

    block, size = GGML_QUANT_SIZES[item.qtype]
    return int(np.prod(item.shape)) // block * size


def _tensor_data(source: _Source, item: _Planned, config: dict[str, Any]) -> np.ndarray:
    import gguf

    data = source.tensor(item.hf_name)
    heads = int(config["num_attention_heads"])
    if item.hf_name.endswith(("q_proj.weight", "q_proj.bias")):
        data = _permute(data, heads)
    elif item.hf_name.endswith(("k_proj.weight", "k_proj.bias")):
        data = _permute(data, int(config.get("num_key_value_heads") or heads))
    return gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), item.qtype)


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotate-half RoPE layout to GGML's interleaved pairs, as convert_hf_to_gguf.py does."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


# ----------------------------------------------------------------------------- metadata


def _add_hyperparameters(writer: Any, config: dict[str, Any], fmt: str, model_dir: Path) -> None:
    import gguf

    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or hidden // heads)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(model_dir.resolve().name)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(hidden)
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(config.get("num_key_value_heads") or heads))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != hidden // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    rope = _rope_settings(config)
    writer.add_rope_freq_base(float(rope.get("rope_theta", 10000.0)))
    if rope.get("rope_type") == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    writer.add_vocab_size(_vocab_size(config))
    file_types = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }
    writer.add_file_type(file_types[fmt])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _rope_settings(config: dict[str, Any]) -> dict[str, Any]:
    # transformers 5 keeps rope_theta and scaling in rope_parameters; 4.x spread them out.
    rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    if "rope_type" not in rope and "type" in rope:
        rope["rope_type"] = rope["type"]
    if "rope_theta" not in rope and "rope_theta" in config:
        rope["rope_theta"] = config["rope_theta"]
    return rope


def _vocab_size(config: dict[str, Any]) -> int:
    return int(config["vocab_size"])


def _add_tokenizer(writer: Any, tokenizer_dir: Path, origin_dir: Path, vocab_size: int) -> None:
    tokens = _tokenizer_json_tokens(tokenizer_dir, vocab_size)
    if _copy_source_tokenizer(writer, origin_dir, tokens, vocab_size):
        _add_chat_template_override(writer, tokenizer_dir)
    else:
        _build_tokenizer(writer, tokenizer_dir, vocab_size)


def _copy_source_tokenizer(
    writer: Any, origin_dir: Path, tokens: list[str] | None, vocab_size: int
) -> bool:
    """Copy the converted-from GGUF's ``tokenizer.*`` keys when its vocabulary is the model's."""
    import gguf

    source = recorded_gguf(origin_dir)
    if source is None:
        return False
    try:
        reader = gguf.GGUFReader(source)
    except Exception:  # moved, unreadable or malformed: build from tokenizer.json instead
        return False
    fields = {name: field for name, field in reader.fields.items() if name.startswith("tokenizer.")}
    if "tokenizer.ggml.tokens" not in fields:
        return False
    source_tokens = fields["tokenizer.ggml.tokens"].contents()
    if len(source_tokens) != vocab_size or (tokens is not None and source_tokens != tokens):
        return False  # the vocabulary was changed after conversion
    for name, field in fields.items():
        main_type = field.types[0]
        sub_type = field.types[-1] if main_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), main_type, sub_type=sub_type)
    return True


def _tokenizer_json_tokens(tokenizer_dir: Path, vocab_size: int) -> list[str] | None:
    spec = _read_tokenizer_json(tokenizer_dir)
    if spec is None:
        return None
    by_id = _vocab_by_id(spec)
    # Rows past the tokenizer's end (an embedding padded to a multiple of 64) get placeholders.
    return [by_id.get(index, f"[PAD{index}]") for index in range(vocab_size)]


def _build_tokenizer(writer: Any, tokenizer_dir: Path, vocab_size: int) -> None:
    import gguf

    spec = _read_tokenizer_json(tokenizer_dir)
    if spec is None:
        raise TrainingError(
            f"{tokenizer_dir}: GGUF export needs tokenizer.json (byte-level BPE); "
            "SentencePiece-only tokenizers are not supported"
        )
    model_type = spec.get("model", {}).get("type")
    if model_type != "BPE":
        raise TrainingError(
            f"{tokenizer_dir}: GGUF export supports byte-level BPE tokenizers, not {model_type}"
        )
    pre = _pre_tokenizer_name(spec.get("pre_tokenizer"), tokenizer_dir)
    by_id = _vocab_by_id(spec)
    added = {int(token["id"]): token for token in spec.get("added_tokens", [])}
    tokens: list[str] = []
    types: list[int] = []
    for index in range(vocab_size):
        if index not in by_id:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            tokens.append(by_id[index])
            special = bool(added[index].get("special"))
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[index])
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    vocab = gguf.SpecialVocab(tokenizer_dir, load_merges=True, n_vocab=vocab_size)
    vocab.add_to_gguf(writer, quiet=True)
    if "bos" not in vocab.add_special_token:
        # Say it outright: llama.cpp's default for BPE vocabularies differs between versions.
        writer.add_add_bos_token(_post_processor_adds_bos(spec, vocab, by_id))


def _read_tokenizer_json(tokenizer_dir: Path) -> dict[str, Any] | None:
    path = tokenizer_dir / "tokenizer.json"
    if not path.is_file():
        return None
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise TrainingError(f"cannot read {path}: {error}") from None
    return spec if isinstance(spec, dict) else None


def _vocab_by_id(spec: dict[str, Any]) -> dict[int, str]:
    vocab = spec.get("model", {}).get("vocab") or {}
    by_id = {int(index): str(token) for token, index in vocab.items()}
    for token in spec.get("added_tokens", []):
        by_id[int(token["id"])] = str(token["content"])
    return by_id


def _pre_tokenizer_name(pre: Any, tokenizer_dir: Path) -> str:
    """The llama.cpp pre-tokenizer that splits text as this tokenizer.json does."""
    steps = pre.get("pretokenizers", []) if isinstance(pre, dict) else []
    kind = pre.get("type") if isinstance(pre, dict) else None
    if kind == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"  # GPT-2's regex, which ByteLevel applies
    kinds = [step.get("type") for step in steps] if kind == "Sequence" else []
    if (
        kinds == ["Digits", "ByteLevel"]
        and steps[0].get("individual_digits")
        and steps[1].get("use_regex", True)
    ):
        return "smollm"  # SmolLM/SmolLM2 as published: digits one by one, then GPT-2
    if (
        kinds == ["Split", "ByteLevel"]
        and steps[0].get("pattern", {}).get("Regex") == _LLAMA3_SPLIT
        and not steps[1].get("use_regex", True)
    ):
        return "llama-bpe"
    raise TrainingError(
        f"{tokenizer_dir}: GGUF export does not know this tokenizer's pre-tokenizer "
        f"({kind or 'none'}); supported: GPT-2 byte-level, SmolLM, Llama 3"
    )


def _post_processor_adds_bos(spec: dict[str, Any], special: Any, by_id: dict[int, str]) -> bool:
    bos_id = special.special_token_ids.get("bos")
    processor = spec.get("post_processor") or {}
    if bos_id is None or processor.get("type") != "TemplateProcessing":
        return False
    first = (processor.get("single") or [{}])[0]
    return first.get("SpecialToken", {}).get("id") == by_id.get(bos_id)


def _add_chat_template_override(writer: Any, tokenizer_dir: Path) -> None:
    """The model directory's own chat template wins over a copied one: training may set it."""
    import gguf

    template = gguf.SpecialVocab(tokenizer_dir, load_merges=False).chat_template
    copied = writer.kv_data[0].get(gguf.Keys.Tokenizer.CHAT_TEMPLATE)
    if template and (copied is None or copied.value != template):
        writer.kv_data[0].pop(gguf.Keys.Tokenizer.CHAT_TEMPLATE, None)  # replace, not duplicate
        writer.add_chat_template(template)


# ----------------------------------------------------------------------------- writing


def _write_atomically(
    writer: Any,
    plan: list[_Planned],
    source: _Source,
    config: dict[str, Any],
    output: Path,
    progress: Progress | None,
) -> None:
    try:
        with StagedFile(output) as scratch:
            try:
                writer.write_header_to_file(path=scratch)
                writer.write_kv_data_to_file()
                writer.write_ti_data_to_file()
                for done, item in enumerate(_tensors(plan, source, config), start=1):
                    writer.write_tensor_data(item)
                    if progress is not None:
                        progress(done, len(plan))
                writer.close()
            except BaseException:
                _close_quietly(writer)
                raise
    except OSError as error:
        raise _write_error(error, output) from None


def _tensors(plan: list[_Planned], source: _Source, config: dict[str, Any]) -> Iterator[Any]:
    for item in plan:
        yield _tensor_data(source, item, config)


def _close_quietly(writer: Any) -> None:
    for handle in writer.fout or []:
        # The flush of a full disk fails again; close() still frees the descriptor.
        with contextlib.suppress(OSError):
            handle.close()
    writer.fout = None


def _write_error(error: OSError, output: Path) -> TrainingError:
    if is_disk_full(error):
        return TrainingError(f"disk full while writing {output}")
    return TrainingError(f"cannot write {output}: {error.strerror or error}")
