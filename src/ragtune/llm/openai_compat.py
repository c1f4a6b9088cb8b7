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
``retries`` (for 429/503, default 2) and ``temperature`` (default 0). Any other
parameter stays in the URL (e.g. Azure's ``api-version``).

The API key is read from ``$RAGTUNE_LLM_API_KEY`` or else ``$OPENAI_API_KEY``
at each request; it is never stored on the object, put in a spec or printed (an
error quoting it, from a server that echoes it, shows ``***``). A spec is given
each time and never stored, so a URL may carry credentials too (``user:password@``,
``?api_key=``); they are sent, and every message and ``repr`` shows the URL
without them.

``timeout`` bounds each request's whole response, a streamed answer included,
not only each read: a server that drips bytes cannot hold the caller.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ragtune.deadline import Deadline, deadline_client
from ragtune.errors import LLMError
from ragtune.llm.base import ChatMessage
from ragtune.url_options import redact, split_url_options

API_KEY_VARS = ("RAGTUNE_LLM_API_KEY", "OPENAI_API_KEY")
RETRY_STATUSES = frozenset({429, 503})
DEFAULT_CONTEXT_WINDOW = 4096
CHARS_PER_TOKEN_ESTIMATE = 3
_MAX_RETRY_AFTER_S = 30.0
_SPEC_OPTIONS = frozenset({"model", "context", "timeout", "retries", "temperature"})


class LLMConfigError(LLMError):
    """An LLM spec or argument is malformed."""


class LLMEndpointError(LLMError):
    """The endpoint failed; the message names it and says how, on one line."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        super().__init__(redact(f"LLM endpoint {url}: {reason}", *_api_keys()))
        self.url = redact(url)
        self.reason = redact(reason, *_api_keys())
        self.status = status


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
        response = self._post(url, self._payload(messages, max_tokens, stream=False))
        return _message_content(url, _json(url, response)).strip()

    def stream_chat(self, messages: list[ChatMessage], max_tokens: int = 256) -> Iterator[str]:
        """Yield the answer piece by piece as the server sends it, all within ``timeout``."""
        url = self._url("/chat/completions")
        payload = self._payload(messages, max_tokens, stream=True)
        with self._deadline.within(self.timeout):
            yield from self._stream_pieces(url, payload)

    def _stream_pieces(self, url: str, payload: dict[str, Any]) -> Iterator[str]:
        attempt = 0
        while True:
            with (
                self._transport_errors(url),
                self._client.stream("POST", url, json=payload, headers=self._headers()) as response,
            ):
                if response.status_code in RETRY_STATUSES and attempt < self.retries:
                    response.read()
                    time.sleep(self._delay(attempt, response))
                    attempt += 1
                    continue
                if response.status_code >= 400:
                    response.read()
                    raise _http_error(url, response, attempt)
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    response.read()  # the server ignored "stream": one whole answer
                    yield _message_content(url, _json(url, response)).strip()
                else:
                    yield from _sse_pieces(url, response.iter_lines())
                return

    # -- HTTP ------------------------------------------------------------------

    @cached_property
    def _deadline(self) -> Deadline:
        return Deadline()

    @cached_property
    def _client(self) -> httpx.Client:
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))
        return deadline_client(self._deadline, timeout=timeout)

    def close(self) -> None:
        if "_client" in self.__dict__:
            self._client.close()
            del self.__dict__["_client"]

    def _url(self, path: str, root: bool = False) -> str:
        """``path`` under the base URL, or under the server root (``/props``, ``/tokenize``)."""
        parts = urlsplit(self.base_url)
        prefix = self._path
        if root:
            prefix = prefix.removesuffix("/v1")
        return urlunsplit((parts.scheme, parts.netloc, prefix + path, self._query, ""))

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json, text/event-stream"}
        key = next(iter(_api_keys()), None)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

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

    def _exchange(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request and its whole response, within ``timeout`` seconds."""
        with self._transport_errors(url), self._deadline.within(self.timeout):
            return self._client.request(method, url, headers=self._headers(), **kwargs)

    @contextmanager
    def _transport_errors(self, url: str) -> Iterator[None]:
        """Turn httpx's transport failures into one-line LLMEndpointErrors."""
        try:
            yield
        except httpx.TimeoutException:
            raise LLMEndpointError(url, f"no answer within {self.timeout:g} s") from None
        except httpx.TransportError as error:
            raise LLMEndpointError(url, _connection_reason(error)) from None

    def _post(self, url: str, payload: dict[str, Any]) -> httpx.Response:
        """POST with retries on 429/503; any other HTTP error raises."""
        attempt = 0
        while True:
            response = self._exchange("POST", url, json=payload)
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                time.sleep(self._delay(attempt, response))
                attempt += 1
                continue
            if response.status_code >= 400:
                raise _http_error(url, response, attempt)
            return response

    def _get_json(self, url: str) -> Any:
        """A probe: the JSON body, or None when the server has no such route."""
        response = self._exchange("GET", url)
        if response.status_code != 200:
            return None
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None

    def _delay(self, attempt: int, response: httpx.Response) -> float:
        retry_after = response.headers.get("retry-after", "")
        try:
            if retry_after:
                return min(max(float(retry_after), 0.0), _MAX_RETRY_AFTER_S)
        except ValueError:
            pass  # an HTTP date: fall back to exponential backoff
        return float(self.backoff * 2**attempt)

    def _models(self) -> list[Any]:
        body = self._get_json(self._url("/models"))
        data = body.get("data") if isinstance(body, dict) else None
        return data if isinstance(data, list) else []

    def _served_context(self) -> int | None:
        props = self._get_json(self._url("/props", root=True))  # llama-server
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
        response = self._exchange("POST", url, json=payload)
        tokens = None
        if response.status_code == 200:
            try:
                body = response.json()
                tokens = body.get("tokens") if isinstance(body, dict) else None
            except (json.JSONDecodeError, UnicodeDecodeError):
                tokens = None
        if not isinstance(tokens, list):
            self._tokenize_available = False
            return None
        self._tokenize_available = True
        return len(tokens)

    def __repr__(self) -> str:
        return f"OpenAICompatibleLLM({redact(self.base_url)!r}, model={self._model!r})"


def _api_keys() -> list[str]:
    """The API keys the environment holds, in the order they are looked for."""
    return [os.environ[name] for name in API_KEY_VARS if os.environ.get(name)]


def _connection_reason(error: httpx.TransportError) -> str:
    text = str(error) or type(error).__name__
    if "refused" in text.lower():
        return "connection refused"
    if isinstance(error, httpx.RemoteProtocolError):
        return f"the server broke the connection ({' '.join(text.split())[:160]})"
    return " ".join(text.split())[:200]


def _http_error(url: str, response: httpx.Response, attempt: int) -> LLMEndpointError:
    detail = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            error = body.get("error", body.get("detail", body.get("message", "")))
            detail = str(error.get("message", error) if isinstance(error, dict) else error)
    except (json.JSONDecodeError, UnicodeDecodeError):
        detail = ""
    detail = " ".join(detail.split())
    if len(detail) > 200:
        detail = detail[:200] + "..."
    reason = f"HTTP {response.status_code}" + (f": {detail}" if detail else "")
    if attempt:
        reason += f" after {attempt + 1} attempts"
    return LLMEndpointError(url, reason, response.status_code)


def _json(url: str, response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LLMEndpointError(url, "the answer is not valid JSON") from None


def _message_content(url: str, body: Any) -> str:
    if isinstance(body, dict) and body.get("error"):
        error = body["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise LLMEndpointError(url, " ".join(str(message).split())[:200])
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices:
        raise LLMEndpointError(url, "the answer has no choices")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        raise LLMEndpointError(url, 'the answer\'s first choice has no "message"')
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise LLMEndpointError(url, 'the answer\'s "content" is not text')
    return content or ""


def _sse_pieces(url: str, lines: Iterator[str]) -> Iterator[str]:
    """The content deltas of a chat-completions event stream."""
    events = 0
    data: list[str] = []

    def event(payload: str) -> Iterator[str]:
        try:
            chunk = json.loads(payload)
        except json.JSONDecodeError:
            raise LLMEndpointError(url, "the event stream holds malformed JSON") from None
        if not isinstance(chunk, dict):
            raise LLMEndpointError(url, "the event stream holds an event that is not an object")
        if chunk.get("error"):
            error = chunk["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise LLMEndpointError(url, " ".join(str(message).split())[:200])
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise LLMEndpointError(url, 'the event stream holds an event without "choices"')
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            text = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(text, str) and text:
                yield text

    for line in lines:
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        if line.startswith("error:"):  # llama-server's way to report a failure mid-stream
            raise LLMEndpointError(url, " ".join(line[6:].split())[:200])
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
        yield from event(payload)
    if data:  # the last event without its blank line
        payload = "\n".join(data)
        if payload.strip() == "[DONE]":
            return
        events += 1
        yield from event(payload)
    if not events:
        raise LLMEndpointError(url, "the event stream ended without any answer")
