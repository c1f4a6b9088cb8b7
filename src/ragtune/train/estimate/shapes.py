"""The model an estimate prices: its shape, whichever way it was named.

A model is a Hugging Face directory (its config.json is read, the weights are not
loaded), a GGUF file (the bundled SmolLM2 by default; converted once and cached, as
``ragtune finetune`` does), a size preset of ``ragtune pretrain`` (1m ... 125m), a public
model's published shape (``PUBLIC``: Llama-2/3, Qwen2.5, SmolLM2; ``7b``, ``8b``, ``13b``
and ``70b`` name Llama-2-7B, Llama-3-8B, Llama-2-13B and Llama-3-70B), explicit
dimensions, or a bare parameter count, for which a shape is assumed by Llama-2's rule
(``from_parameters``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ragtune.errors import EstimateError
from ragtune.train.pretrain.sizes import PRESETS, ModelShape, layer_parameters

DEFAULT_VOCAB = 8192  # ragtune pretrain's BPE default


@dataclass(frozen=True)
class ModelSpec:
    name: str
    shape: ModelShape
    vocab: int
    tied: bool = True  # input and output embeddings shared
    directory: Path | None = None  # a Hugging Face directory: tokenizer and weights
    assumed: bool = False  # the shape was made up from a parameter count

    @property
    def parameters(self) -> int:
        embeddings = self.vocab * self.shape.dim * (1 if self.tied else 2)
        return embeddings + self.shape.layers * layer_parameters(self.shape) + self.shape.dim

    @property
    def non_embedding(self) -> int:
        """Parameters every token multiplies by: the layers and the output head."""
        return self.shape.layers * layer_parameters(self.shape) + self.vocab * self.shape.dim


def from_directory(directory: Path, context: int | None = None) -> ModelSpec:
    """A Hugging Face model directory's shape, from its config.json."""
    config_file = directory / "config.json"
    if not directory.is_dir():
        raise EstimateError(f"model {directory} is not a directory")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EstimateError(f"model {directory} has no config.json") from None
    except (OSError, ValueError) as error:
        raise EstimateError(f"cannot read {config_file}: {error}") from None
    if not isinstance(config, dict):
        raise EstimateError(f"{config_file}: not a model configuration")
    try:
        dim = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        shape = ModelShape(
            layers=int(config["num_hidden_layers"]),
            heads=heads,
            dim=dim,
            context=int(context or config.get("max_position_embeddings") or 2048),
            kv_heads=int(config.get("num_key_value_heads") or heads),
            ffn=int(config.get("intermediate_size") or 4 * dim),
        )
        vocab = int(config["vocab_size"])
    except (KeyError, TypeError, ValueError) as error:
        raise EstimateError(f"{config_file}: no usable model shape ({error})") from None
    _check(shape, vocab, str(config_file))
    tied = bool(config.get("tie_word_embeddings", True))
    return ModelSpec(directory.name, shape, vocab, tied, directory)


def from_preset(name: str, vocab: int | None, context: int | None = None) -> ModelSpec:
    base = PRESETS[name.lower()]
    shape = ModelShape(base.layers, base.heads, base.dim, context or base.context)
    return ModelSpec(name.lower(), shape, vocab or DEFAULT_VOCAB)


def from_dimensions(
    layers: int,
    dim: int,
    heads: int | None,
    kv_heads: int | None,
    ffn: int | None,
    context: int,
    vocab: int,
) -> ModelSpec:
    heads = heads or max(1, dim // 64)
    shape = ModelShape(layers, heads, dim, context, kv_heads, ffn)
    _check(shape, vocab, "the model")
    return ModelSpec(f"{layers}x{dim}", shape, vocab)


# Published shapes (each model's config.json on the Hugging Face Hub): layers, width,
# heads, KV heads, feed-forward width, vocabulary, context, tied embeddings. Qwen2.5's
# q/k/v biases (under 0.01% of its parameters) are not counted.
PUBLIC: dict[str, tuple[int, int, int, int, int, int, int, bool]] = {
    "smollm2-135m": (30, 576, 9, 3, 1536, 49152, 8192, True),
    "qwen2.5-0.5b": (24, 896, 14, 2, 4864, 151936, 32768, True),
    "qwen2.5-1.5b": (28, 1536, 12, 2, 8960, 151936, 32768, True),
    "qwen2.5-3b": (36, 2048, 16, 2, 11008, 151936, 32768, True),
    "qwen2.5-7b": (28, 3584, 28, 4, 18944, 152064, 32768, False),
    "qwen2.5-14b": (48, 5120, 40, 8, 13824, 152064, 32768, False),
    "qwen2.5-32b": (64, 5120, 40, 8, 27648, 152064, 32768, False),
    "qwen2.5-72b": (80, 8192, 64, 8, 29568, 152064, 32768, False),
    "llama2-7b": (32, 4096, 32, 32, 11008, 32000, 4096, False),
    "llama2-13b": (40, 5120, 40, 40, 13824, 32000, 4096, False),
    "llama2-70b": (80, 8192, 64, 8, 28672, 32000, 4096, False),
    "llama3-8b": (32, 4096, 32, 8, 14336, 128256, 8192, False),
    "llama3-70b": (80, 8192, 64, 8, 28672, 128256, 8192, False),
}
PUBLIC_ALIASES = {"7b": "llama2-7b", "8b": "llama3-8b", "13b": "llama2-13b", "70b": "llama3-70b"}
# Llama-2's proportions, which ``from_parameters`` scales: 128-wide heads and a width of
# 128 a layer (7B: 32 x 4096, 13B: 40 x 5120), feed-forward 8/3 of the width rounded up
# to a multiple of 256 (11008, 13824), a 32,000-token vocabulary, untied embeddings.
LLAMA_HEAD_DIM = 128
LLAMA_WIDTH_PER_LAYER = 128
LLAMA_FFN_MULTIPLE = 256
LLAMA_VOCAB = 32000


def public_name(name: str) -> str | None:
    """The public shape ``name`` names (an alias resolved), or None."""
    key = name.strip().lower()
    key = PUBLIC_ALIASES.get(key, key)
    return key if key in PUBLIC else None


def from_public(name: str, context: int | None = None) -> ModelSpec:
    key = public_name(name)
    if key is None:
        raise EstimateError(f"unknown model shape {name!r}; known: {', '.join(public_names())}")
    layers, dim, heads, kv, ffn, vocab, native_context, tied = PUBLIC[key]
    shape = ModelShape(layers, heads, dim, context or native_context, kv, ffn)
    return ModelSpec(key, shape, vocab, tied)


def public_names() -> list[str]:
    return [*PUBLIC_ALIASES, *PUBLIC]


def llama_shape(layers: int, context: int) -> ModelShape:
    """Llama-2's proportions at ``layers`` layers (see ``LLAMA_WIDTH_PER_LAYER``)."""
    dim = LLAMA_WIDTH_PER_LAYER * layers
    ffn = LLAMA_FFN_MULTIPLE * math.ceil(8 * dim / 3 / LLAMA_FFN_MULTIPLE)
    return ModelShape(layers, dim // LLAMA_HEAD_DIM, dim, context, ffn=ffn)


def from_parameters(count: float, context: int, vocab: int | None, tied: bool = True) -> ModelSpec:
    """An assumed shape with about ``count`` parameters: Llama-2's proportions
    (``llama_shape``, which gives Llama-2-7B and -13B exactly) at the number of layers
    whose total comes nearest ``count``, embeddings included (``vocab``, default Llama's
    32,000; ``tied`` as ``ragtune pretrain`` builds them, untied as Llama's are)."""
    if not (count > 0 and math.isfinite(count)):
        raise EstimateError(f"--params must be a positive number, not {count}")
    vocab = vocab or LLAMA_VOCAB
    best: ModelSpec | None = None
    for layers in range(1, 257):
        spec = ModelSpec(
            f"{count:.3g} parameters", llama_shape(layers, context), vocab, tied, assumed=True
        )
        if best is None or abs(math.log(spec.parameters / count)) < abs(
            math.log(best.parameters / count)
        ):
            best = spec
        if spec.parameters > count:  # the totals only grow with the layers
            break
    assert best is not None
    return best


def _check(shape: ModelShape, vocab: int, where: str) -> None:
    values = {"layers": shape.layers, "heads": shape.heads, "dim": shape.dim}
    values |= {"context": shape.context, "vocab": vocab, "kv_heads": shape.kv}
    for name, value in values.items():
        if value <= 0:
            raise EstimateError(f"{where}: {name} must be positive, not {value}")
    if shape.dim % shape.heads or shape.heads % shape.kv:
        raise EstimateError(
            f"{where}: dim {shape.dim}, heads {shape.heads} and kv_heads {shape.kv} do not divide"
        )
