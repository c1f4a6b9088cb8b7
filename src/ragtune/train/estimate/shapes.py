"""The model an estimate prices: its shape, whichever way it was named.

A model is a Hugging Face directory (its config.json is read, the weights are not
loaded), a GGUF file (the bundled SmolLM2 by default; converted once and cached, as
``ragtune finetune`` does), a size preset of ``ragtune pretrain`` (1m ... 125m), explicit
dimensions, or a bare parameter count, for which a shape is assumed (width 64 x layers,
the aspect ratio of the Chinchilla and Llama families).
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


def from_parameters(count: float, context: int, vocab: int | None) -> ModelSpec:
    """An assumed shape with about ``count`` parameters: width = 64 x layers, 64-wide
    heads, Llama's feed-forward (12·d² a layer), so count ≈ 12·L·(64·L)² + V·d."""
    if not (count > 0 and math.isfinite(count)):
        raise EstimateError(f"--params must be a positive number, not {count}")
    vocab = vocab or 32000
    layers = max(1, round((count / (12 * 64**2)) ** (1 / 3)))
    for _ in range(20):  # the embeddings count too: shrink until the total fits
        dim = 64 * layers
        shape = ModelShape(layers, max(1, dim // 64), dim, context)
        spec = ModelSpec(f"{count:.3g} parameters", shape, vocab, assumed=True)
        if spec.parameters <= count * 1.15 or layers == 1:
            return spec
        layers -= 1
    return spec


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
