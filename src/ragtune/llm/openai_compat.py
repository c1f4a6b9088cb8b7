"""Chat models behind any OpenAI-compatible HTTP endpoint.

One client for OpenAI itself, vLLM, Ollama (``/v1``), llama.cpp's llama-server
and LM Studio: ``POST {base}/chat/completions``, streamed as server-sent events
with ``"stream": true``.

Spec (what ``--llm`` and ``load_llm`` accept)::

    openai:http://127.0.0.1:8080/v1?model=NAME&context=4096
    http://127.0.0.1:11434/v1?model=llama3.2        # the openai: prefix is optional

Options in the query string: ``model`` (optional when the server serves exactly
one, as llama-server and vLLM do: it is then read from ``/v1/models``),
``context`` (the context window in tokens), ``timeout`` (seconds, default 120),
``retries`` (for 408, 429, 500, 502, 503 and 504, default 2) and ``temperature``
(default 0). Any other parameter stays in the URL (e.g. Azure's ``api-version``).

The API key is read from ``$RAGTUNE_LLM_API_KEY`` or else ``$OPENAI_API_KEY``
at each request; it is never stored on the object, put in a spec or printed (an
error quoting it, from a server that echoes it, shows ``***``). A spec is given
each time and never stored, so a URL may carry credentials too (``user:password@``,
``?api_key=``); they are sent, and every message and ``repr`` shows the URL
without them.

``timeout`` bounds each request's whole response, a streamed answer included,
not only each read: a server that drips bytes cannot hold the caller. Keys,
retries, deadlines and error messages are those of every OpenAI-compatible
endpoint (:mod:`ragtune.net.openai_client`); this module shapes the requests and
reads the answers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ragtune.errors import LLMConfigError, LLMEndpointError
from ragtune.llm.base import ChatMessage
from ragtune.net.openai_client import EndpointErrors, OpenAIClient, error_message
from ragtune.url_options import redact, split_url_options

API_KEY_VARS = ("RAGTUNE_LLM_API_KEY", "OPENAI_API_KEY")
DEFAULT_CONTEXT_WINDOW = 4096
CHARS_PER_TOKEN_ESTIMATE = 3
_SPEC_OPTIONS = frozenset({"model", "context", "timeout", "retries", "temperature"})
_ERRORS = EndpointErrors(
    connection=LLMEndpointError,
    timeout=LLMEndpointError,
    status=LLMEndpointError,
    answer=LLMEndpointError,
)


class OpenAICompatibleLLM:
    """A chat model served over the OpenAI chat-completions protocol.

    ``context_window`` is the ``context`` given, else what the server reports
    (llama-server's ``/props`` ``n_ctx``, vLLM's ``max_model_len`` in
    ``/v1/models``), else 4096 (``DEFAULT_CONTEXT_WINDOW``): give ``context=``
    for servers that do not say, such as OpenAI and Ollama.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        context_window: int | None = None,
        timeout: float = 120.0,
        retries: int = 2,
        backoff: float = 0.5,
        temperature: float = 0.0,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        shown = redact(base_url)
        if not base_url.startswith(("http://", "https://")) or not urlsplit(base_url).netloc:
            raise LLMConfigError(f"LLM endpoint {shown!r} is not an http(s) URL")
        if context_window is not None and context_window < 16:
            raise LLMConfigError(f"LLM endpoint {shown}: context window {context_window} too small")
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise LLMConfigError(f"LLM endpoint {shown}: timeout, retries or backoff out of range")
        parts = urlsplit(base_url)
        self.base_url = urlunsplit(
            (parts.scheme, parts.netloc, parts.path.rstrip("/"), parts.query, "")
        )
        self._path = parts.path.rstrip("/")
        self._query = parts.query
        self._model = model or None
        self._context_window = context_window
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.temperature = temperature
        self.extra_body = dict(extra_body or {})
        self._tokenize_available: bool | None = None

    @classmethod
    def from_spec(cls, spec: str) -> OpenAICompatibleLLM:
        """``openai:http://HOST:PORT/v1?model=NAME[&context=N][&timeout=S][&retries=N]``."""
        url = spec.removeprefix("openai:")
        base, options = split_url_options(url, _SPEC_OPTIONS)
        try:
            return cls(
                base,
                options.get("model") or None,
                context_window=int(options["context"]) if options.get("context") else None,
                timeout=float(options.get("timeout") or 120.0),
                retries=int(options.get("retries") or 2),
                temperature=float(options.get("temperature") or 0.0),
            )
        except ValueError:
            raise LLMConfigError(f"LLM spec {redact(url)!r} has a malformed option") from None

    # -- the LLM protocol -------------------------------------------------------

    @property
    def name(self) -> str:
        return self.model

    @cached_property
    def model(self) -> str:
        """The model given, or the only one the server lists."""
        if self._model:
            return self._model
        ids = [item.get("id") for item in self._models() if isinstance(item, dict)]
        if len(ids) == 1 and isinstance(ids[0], str) and ids[0]:
            return ids[0]
        raise LLMConfigError(
            f"LLM endpoint {redact(self.base_url)}: no model named; add ?model=NAME to the spec"
        )

    @cached_property
    def context_window(self) -> int:
        if self._context_window is not None:
            return self._context_window
        return self._served_context() or DEFAULT_CONTEXT_WINDOW

    def count_tokens(self, text: str) -> int:
        """The server's own count where it offers ``POST /tokenize`` (llama-server, vLLM).

        Elsewhere (OpenAI, Ollama) an estimate of one token per three UTF-8
        bytes, rounded up: above the real count for the usual English and code
        (about four characters per token), so prompts packed by it fit the
        window; text made of unusual symbols can still beat it, hence ``context=``
        a little below the model's real window is the safe setting there.
        """
        if self._tokenize_available is not False:
            tokens = self._tokenize(text)
            if tokens is not None:
                return tokens
        return math.ceil(len(text.encode("utf-8")) / CHARS_PER_TOKEN_ESTIMATE)

    def chat(self, messages: list[ChatMessage], max_tokens: int = 256) -> str:
        url = self._url("/chat/completions")
        body = self._http.post_json(url, self._payload(messages, max_tokens, stream=False))
        return self._message_content(url, body).strip()

    def stream_chat(self, messages: list[ChatMessage], max_tokens: int = 256) -> Iterator[str]:
        """Yield the answer piece by piece as the server sends it, all within ``timeout``."""
        url = self._url("/chat/completions")
        payload = self._payload(messages, max_tokens, stream=True)
        with self._http.request("POST", url, payload) as response:
            if "text/event-stream" not in response.headers.get("content-type", ""):
                response.read()  # the server ignored "stream": one whole answer
                yield self._message_content(url, self._http.json(url, response)).strip()
            else:
                yield from self._sse_pieces(url, response.iter_lines())

    # -- HTTP ------------------------------------------------------------------

    @cached_property
    def _http(self) -> OpenAIClient:
        return OpenAIClient(
            key_vars=API_KEY_VARS,
            errors=_ERRORS,
            timeout=self.timeout,
            retries=self.retries,
            backoff=self.backoff,
            accept="application/json, text/event-stream",
        )

    def close(self) -> None:
        self._http.close()

    def _url(self, path: str, root: bool = False) -> str:
        """``path`` under the base URL, or under the server root (``/props``, ``/tokenize``)."""
        parts = urlsplit(self.base_url)
        prefix = self._path
        if root:
            prefix = prefix.removesuffix("/v1")
        return urlunsplit((parts.scheme, parts.netloc, prefix + path, self._query, ""))

    def _payload(
        self, messages: list[ChatMessage], max_tokens: int, stream: bool
    ) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            "stream": stream,
            **self.extra_body,
        }

    def _models(self) -> list[Any]:
        body = self._http.probe_json("GET", self._url("/models"))
        data = body.get("data") if isinstance(body, dict) else None
        return data if isinstance(data, list) else []

    def _served_context(self) -> int | None:
        props = self._http.probe_json("GET", self._url("/props", root=True))  # llama-server
        if isinstance(props, dict):
            settings = props.get("default_generation_settings")
            n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
            if isinstance(n_ctx, int) and n_ctx > 0:
                return n_ctx
        models = [item for item in self._models() if isinstance(item, dict)]  # vLLM
        if len(models) > 1:
            models = [item for item in models if item.get("id") == self._model]
        for item in models[:1]:
            length = item.get("max_model_len")
            if isinstance(length, int) and length > 0:
                return length
        return None

    def _tokenize(self, text: str) -> int | None:
        """Ask the server once; remember when it cannot count."""
        url = self._url("/tokenize", root=True)
        # llama-server reads "content", vLLM reads "model" and "prompt".
        payload = {"content": text, "prompt": text, "model": self._model or ""}
        if not self._model:
            payload.pop("model")
        body = self._http.probe_json("POST", url, payload)
        tokens = body.get("tokens") if isinstance(body, dict) else None
        if not isinstance(tokens, list):
            self._tokenize_available = False
            return None
        self._tokenize_available = True
        return len(tokens)

    # -- reading the answers -----------------------------------------------------

    def _message_content(self, url: str, body: Any) -> str:
        """The text of a chat completion's first choice."""
        if isinstance(body, dict) and body.get("error"):
            raise self._http.answer_error(url, error_message(body))
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or not choices:
            raise self._http.answer_error(url, "the answer has no choices")
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        if not isinstance(message, dict):
            raise self._http.answer_error(url, 'the answer\'s first choice has no "message"')
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise self._http.answer_error(url, 'the answer\'s "content" is not text')
        return content or ""

    def _sse_pieces(self, url: str, lines: Iterator[str]) -> Iterator[str]:
        """The content deltas of a chat-completions event stream."""
        events = 0
        data: list[str] = []
        for line in lines:
            if line.startswith(":"):
                continue  # a comment (keep-alive)
            if line.startswith("error:"):  # llama-server's way to report a failure mid-stream
                raise self._http.answer_error(url, error_message({"error": line[6:]}))
            if line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
                continue
            if line.strip() or not data:
                continue  # event:, id:, retry: fields, or stray blank lines
            payload = "\n".join(data)
            data = []
            if payload.strip() == "[DONE]":
                return
            events += 1
            yield from self._event_pieces(url, payload)
        if data:  # the last event without its blank line
            payload = "\n".join(data)
            if payload.strip() == "[DONE]":
                return
            events += 1
            yield from self._event_pieces(url, payload)
        if not events:
            raise self._http.answer_error(url, "the event stream ended without any answer")

    def _event_pieces(self, url: str, payload: str) -> Iterator[str]:
        """The text pieces of one event of the stream."""
        try:
            chunk = json.loads(payload)
        except json.JSONDecodeError:
            raise self._http.answer_error(url, "the event stream holds malformed JSON") from None
        if not isinstance(chunk, dict):
            raise self._http.answer_error(
                url, "the event stream holds an event that is not an object"
            )
        if chunk.get("error"):
            raise self._http.answer_error(url, error_message(chunk))
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise self._http.answer_error(url, 'the event stream holds an event without "choices"')
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            text = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(text, str) and text:
                yield text

    def __repr__(self) -> str:
        return f"OpenAICompatibleLLM({redact(self.base_url)!r}, model={self._model!r})"
