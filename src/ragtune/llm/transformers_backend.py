"""Hugging Face model directories through transformers, optionally with a PEFT adapter.

The spec is ``hf:DIR`` or ``hf:DIR#adapter=ADAPTER_DIR`` (also ``&context=N``). The
directory is what ``save_pretrained`` writes: ``config.json``, the weights, and a
tokenizer with a chat template. Weights load from safetensors only (a ``.bin`` is a pickle
that can run code), and a model's own Python code never runs. Decoding is greedy with the
same repetition penalty as the llama.cpp backend, so answers are repeatable.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import warnings
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from ragtune.errors import LLMError, ModelNotFoundError, one_line
from ragtune.llm.adapters import adapter_base, check_adapter_weights, is_adapter_dir
from ragtune.llm.base import ChatMessage
from ragtune.runtime import configure_torch_threads
from ragtune.url_options import parse_spec, split_fragment_options

# The longest window used unless asked for more: attention on CPU grows with it.
MAX_DEFAULT_CONTEXT = 4096
REPETITION_PENALTY = 1.15  # as LlamaCppLLM: small models loop under greedy decoding without it
_WINDOW_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


class TransformersLLM:
    """A causal LM from a transformers model directory, run in-process by PyTorch on the CPU."""

    def __init__(
        self,
        model_dir: str | Path,
        adapter_dir: str | Path | None = None,
        context_window: int | None = None,
        threads: int | None = None,
    ) -> None:
        self.model_dir = Path(model_dir).expanduser()
        self.adapter_dir = Path(adapter_dir).expanduser() if adapter_dir else None
        self.threads = threads
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory: never the Hub
        _check_model_dir(self.model_dir)
        if self.adapter_dir is not None:
            _check_adapter_dir(self.adapter_dir)
        self._config = _load_config(self.model_dir)
        self._tokenizer = _load_tokenizer(self.model_dir)
        limit = _config_window(self._config)
        if context_window is not None:
            if context_window <= 0:
                raise ModelNotFoundError(f"context window must be positive, not {context_window}")
            self._context_window = min(context_window, limit) if limit else context_window
        else:
            self._context_window = min(limit or 2048, MAX_DEFAULT_CONTEXT)

    @classmethod
    def from_spec(cls, spec: str) -> TransformersLLM:
        """``hf:DIR[#adapter=ADAPTER_DIR][&context=N]`` (the ``hf:`` prefix is optional)."""
        parsed = parse_spec(spec)
        text = parsed.target if parsed.scheme == "hf" else parsed.text
        if not text.partition("#")[0].strip():
            raise ModelNotFoundError(f"{spec}: expected hf:DIR[#adapter=ADAPTER_DIR]")
        try:
            where, options = split_fragment_options(text, ("adapter", "context"))
        except ValueError as error:
            raise ModelNotFoundError(
                f"{spec}: malformed option {str(error)!r}; expected adapter=DIR or context=N"
            ) from None
        context = options.get("context")
        if context is not None and not context.isdigit():
            raise ModelNotFoundError(f"{spec}: malformed option 'context={context}'")
        model_dir, adapter = where.strip(), options.get("adapter")
        if adapter is None and _is_adapter_only(Path(model_dir).expanduser()):
            # hf:RUN/adapter alone: the base is the one the adapter records
            model_dir, adapter = adapter_base(Path(model_dir).expanduser()), model_dir
        return cls(
            model_dir,
            adapter_dir=adapter,
            context_window=int(context) if context else None,
        )

    @property
    def name(self) -> str:
        base = self.model_dir.resolve().name
        return f"{base}+{self.adapter_dir.resolve().name}" if self.adapter_dir else base

    @property
    def context_window(self) -> int:
        return self._context_window

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    @cached_property
    def _model(self) -> Any:
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # "Loading weights" would precede answers
        configure_torch_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        _refuse_pickled_weights(self.model_dir)
        try:
            model: Any = AutoModelForCausalLM.from_pretrained(
                self.model_dir, use_safetensors=True, trust_remote_code=False
            )
        except Exception as error:  # OSError, ValueError, safetensors and torch errors alike
            raise ModelNotFoundError(
                f"cannot load the weights in {self.model_dir}: {one_line(error)}"
            ) from None
        if self.adapter_dir is not None:
            from peft import PeftModel

            try:
                with warnings.catch_warnings():  # peft 0.21 on transformers 5: a deprecation
                    warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
                    model = PeftModel.from_pretrained(model, str(self.adapter_dir))
            except Exception as error:
                raise ModelNotFoundError(
                    f"cannot load the adapter {self.adapter_dir}: {one_line(error)}"
                ) from None
        model.eval()
        return model

    def load(self) -> None:
        """Load the weights (and adapter) now rather than on the first request."""
        _ = self._model

    def _inputs(self, messages: list[ChatMessage], max_tokens: int) -> dict[str, Any]:
        try:
            encoded = self._tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        except Exception as error:  # a template that fails on these messages
            raise LLMError(
                f"the chat template of {self.model_dir} failed: {one_line(error)}"
            ) from None
        inputs = dict(encoded)
        prompt_tokens = int(inputs["input_ids"].shape[-1])
        room = self._context_window - prompt_tokens
        if room <= 0:
            raise LLMError(
                f"the prompt is {prompt_tokens} tokens; the context window is "
                f"{self._context_window}"
            )
        tokenizer = self._tokenizer
        stops = {tokenizer.eos_token_id, *_as_list(self._model.generation_config.eos_token_id)}
        stops.discard(None)
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = min(stops, default=0)
        return {
            **inputs,
            "max_new_tokens": min(max_tokens, room),
            "do_sample": False,
            "repetition_penalty": REPETITION_PENALTY,
            "eos_token_id": sorted(stops) or None,
            "pad_token_id": pad,
            # Only what is asked here: a model's own sampling defaults would only warn.
            "temperature": None,
            "top_p": None,
            "top_k": None,
        }

    def chat(self, messages: list[ChatMessage], max_tokens: int = 256) -> str:
        import torch

        arguments = self._inputs(messages, max_tokens)
        try:
            with torch.inference_mode():
                output = self._model.generate(**arguments)
        except Exception as error:
            raise LLMError(f"generation failed: {one_line(error)}") from None
        prompt_length = arguments["input_ids"].shape[-1]
        text = self._tokenizer.decode(output[0][prompt_length:], skip_special_tokens=True)
        return str(text).strip()

    def stream_chat(self, messages: list[ChatMessage], max_tokens: int = 256) -> Iterator[str]:
        """Yield the answer piece by piece as ``generate`` produces it (in a thread)."""
        import torch
        from transformers import TextIteratorStreamer

        arguments = self._inputs(messages, max_tokens)  # here, so its errors reach the caller
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []

        def generate() -> None:
            try:
                with torch.inference_mode():
                    self._model.generate(**arguments, streamer=streamer)
            except Exception as error:  # surfaced to the consumer below
                failure.append(error)
                streamer.end()

        worker = threading.Thread(target=generate, daemon=True)
        worker.start()
        for piece in streamer:
            if piece:
                yield piece
        worker.join()
        if failure:
            raise LLMError(f"generation failed: {one_line(failure[0])}")


def _check_model_dir(path: Path) -> None:
    if not path.exists():
        raise ModelNotFoundError(f"model directory {path} does not exist")
    if not path.is_dir():
        raise ModelNotFoundError(f"{path} is not a directory; hf: expects a model directory")
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"{path} has no config.json; hf: expects a transformers model directory"
        )


def _refuse_pickled_weights(path: Path) -> None:
    if any(path.glob("*.safetensors")):
        return
    pickled = sorted(path.glob("pytorch_model*.bin"))
    if pickled:
        raise ModelNotFoundError(
            f"cannot load the weights in {path}: they are in {pickled[0].name}, a pickle that "
            "can run code when loaded; ragtune reads safetensors only (convert them)"
        )


def _is_adapter_only(path: Path) -> bool:
    return is_adapter_dir(path) and not (path / "config.json").is_file()


def _check_adapter_dir(path: Path) -> None:
    if not path.is_dir():
        raise ModelNotFoundError(f"adapter directory {path} does not exist")
    if not (path / "adapter_config.json").is_file():
        raise ModelNotFoundError(f"{path} has no adapter_config.json; it is not a PEFT adapter")
    check_adapter_weights(path)
    if importlib.util.find_spec("peft") is None:
        raise LLMError("an adapter needs the peft package: pip install 'ragtune[hf]'")


def _load_config(path: Path) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=False)
    except Exception as error:
        raise ModelNotFoundError(f"cannot read {path / 'config.json'}: {one_line(error)}") from None


def _load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except Exception as error:
        raise ModelNotFoundError(f"no usable tokenizer in {path}: {one_line(error)}") from None
    if not getattr(tokenizer, "chat_template", None):
        raise ModelNotFoundError(f"the tokenizer in {path} has no chat template")
    return tokenizer


def _config_window(config: Any) -> int | None:
    for key in _WINDOW_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
