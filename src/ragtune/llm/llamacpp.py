"""Local GGUF models through llama.cpp (the prebuilt xllamacpp wheel, no compile)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragtune.assets import DEFAULT_LLM
from ragtune.errors import LLMError, ModelNotFoundError
from ragtune.llm.base import ChatMessage
from ragtune.llm.gguf_tokenizer import GGUF_MAGIC, gguf_tokenizer
from ragtune.runtime import llm_threads

if TYPE_CHECKING:
    from tokenizers import Tokenizer

_DONE = object()


class LlamaCppLLM:
    """A GGUF chat model run in-process by llama.cpp, greedy by default for repeatable answers."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        context_window: int = 2048,
        threads: int | None = None,
        temperature: float = 0.0,
        parallel: int = 1,
    ) -> None:
        self.model_path = Path(model_path) if model_path else DEFAULT_LLM.require()
        _check_gguf(self.model_path)
        self._context_window = context_window
        self.threads = threads or llm_threads()
        self.temperature = temperature
        self.parallel = max(1, parallel)

    @property
    def name(self) -> str:
        return self.model_path.stem

    @property
    def context_window(self) -> int:
        return self._context_window

    @cached_property
    def _server(self) -> Any:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        # llama.cpp splits n_ctx between its slots: each slot gets the whole window.
        params.n_ctx = self._context_window * self.parallel
        params.n_parallel = self.parallel
        params.cont_batching = True  # the slots' tokens decode together, one batch a step
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.verbosity = -1  # llama.cpp's own logging would drown the answer
        try:
            return xllamacpp.Server(params)
        except Exception as error:  # the binding raises plain Exception on a bad model
            raise ModelNotFoundError(f"cannot load {self.model_path}: {error}") from None

    def load(self) -> None:
        """Load the model now rather than on the first request."""
        _ = self._server

    def reserve_slots(self, parallel: int) -> None:
        """Answer up to ``parallel`` requests at once, before the model loads.

        llama.cpp gives each request a slot with its own share of the KV cache and
        decodes the tokens of every busy slot in one batch per step (continuous
        batching): ``chat`` and ``stream_chat`` called from several threads at once
        then really run together (the binding releases the GIL while it waits).
        """
        if "_server" in self.__dict__:
            raise LLMError("the model is already loaded: reserve slots before its first use")
        self.parallel = max(1, parallel)

    @property
    def http_url(self) -> str:
        """llama.cpp's own HTTP server for this model (OpenAI-compatible under ``/v1``).

        It listens on loopback only and lives as long as this object; loads the model.
        """
        return str(self._server.listening_address).rstrip("/")

    @cached_property
    def _tokenizer(self) -> Tokenizer | None:
        return gguf_tokenizer(self.model_path)

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` as llama.cpp counts them (special tokens parsed, none added)."""
        if self._tokenizer is not None:
            return len(self._tokenizer.encode(text, add_special_tokens=False).ids)
        # A tokenizer not rebuilt exactly from the GGUF: ask llama.cpp's /tokenize, on
        # loopback (about 30 ms a text, where the rebuilt one takes 0.1 ms).
        import httpx  # only here: every other path starts without the HTTP stack

        response = httpx.post(
            f"{self._server.listening_address}/tokenize", json={"content": text}, timeout=30
        )
        response.raise_for_status()
        return len(response.json()["tokens"])

    def _request(
        self, messages: list[ChatMessage], max_tokens: int, stream: bool
    ) -> dict[str, Any]:
        return {
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            # Small models loop on a phrase under greedy decoding without this.
            "repeat_penalty": 1.15,
            "stream": stream,
        }

    def chat(self, messages: list[ChatMessage], max_tokens: int = 256) -> str:
        result = self._server.handle_chat_completions(self._request(messages, max_tokens, False))
        return _content(result)

    def stream_chat(self, messages: list[ChatMessage], max_tokens: int = 256) -> Iterator[str]:
        """Yield the answer piece by piece as llama.cpp produces it."""
        pieces: queue.Queue[Any] = queue.Queue()
        # Set when the consumer stops reading (a client that went away): the next
        # chunk's callback answers True, which tells llama.cpp to stop and free the slot.
        abandoned = threading.Event()

        def on_chunk(chunk: dict[str, Any]) -> bool:
            if abandoned.is_set():
                return True
            if "error" in chunk:
                pieces.put(LLMError(_error_message(chunk)))
                return True
            for choice in chunk.get("choices", []):
                text = (choice.get("delta") or {}).get("content")
                if text:
                    pieces.put(text)
            return False

        def generate() -> None:
            try:
                result = self._server.handle_chat_completions(
                    self._request(messages, max_tokens, True), on_chunk
                )
                if isinstance(result, dict) and "error" in result:
                    pieces.put(LLMError(_error_message(result)))
            except Exception as error:  # surfaced to the consumer below
                pieces.put(LLMError(f"generation failed: {error}"))
            finally:
                pieces.put(_DONE)

        self.load()  # in this thread, so a load error is raised to the caller
        worker = threading.Thread(target=generate, daemon=True)
        worker.start()
        try:
            while (item := pieces.get()) is not _DONE:
                if isinstance(item, LLMError):
                    raise item
                yield item
        finally:
            # Closed early (GeneratorExit) or failed: stop generating; the worker ends
            # at the next token, so it is not waited for here.
            abandoned.set()
        worker.join()


def _check_gguf(path: Path) -> None:
    if not path.is_file():
        raise ModelNotFoundError(f"model file {path} does not exist")
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise ModelNotFoundError(f"{path} is not a GGUF model file")


def _content(result: Any) -> str:
    if not isinstance(result, dict) or "error" in result or not result.get("choices"):
        raise LLMError(_error_message(result))
    return str(result["choices"][0]["message"].get("content") or "").strip()


def _error_message(result: Any) -> str:
    if isinstance(result, dict) and isinstance(result.get("error"), dict):
        return f"llama.cpp: {result['error'].get('message', 'unknown error')}"
    return f"llama.cpp returned an unexpected result: {str(result)[:200]}"
