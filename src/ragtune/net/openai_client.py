"""The one HTTP client for OpenAI-compatible endpoints: chat completions and embeddings.

What every such endpoint shares is decided here, once; the callers
(``llm/openai_compat.py``, ``index/embedding/remote.py``) keep only the shapes of
their requests and the reading of their answers.

- **API key**: the first of ``key_vars`` set in the environment, read at each
  request and sent as a bearer token; never stored on an object, and masked
  (``***``) in every error, since a server may echo it back.
- **Retries**: a status in ``RETRY_STATUSES`` (408, 429, 500, 502, 503, 504) is tried
  again up to ``retries`` times, after the server's ``Retry-After`` (delta-seconds or
  an HTTP-date, at most ``MAX_RETRY_WAIT_S``) or else an exponential backoff from
  ``backoff`` seconds. Any other error status fails at once.
- **Deadline**: each attempt's whole response, a streamed one included, arrives
  within ``timeout`` seconds (see :mod:`ragtune.net.deadline`); proxies from the
  environment are honoured.
- **Errors**: a timeout, a failed connection, an error status and an unusable
  answer each become the one-line error the caller's :class:`EndpointErrors` names,
  with the server's own message (``{"error": {"message": ...}}``) where it sent one.
- **Lifetime**: one connection pool per client, opened on first use and released by
  :meth:`OpenAIClient.close` (the client can be used again after it).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any, NamedTuple

import httpx

from ragtune.errors import RagtuneError
from ragtune.net.causes import refused
from ragtune.net.deadline import Deadline, deadline_client
from ragtune.net.retry import RETRY_STATUSES, backoff_seconds, retry_after_seconds
from ragtune.url_options import redact

# An endpoint asking for longer is retried after this long anyway: a caller waits for it.
MAX_RETRY_WAIT_S = 30.0
_DETAIL_CHARS = 200


class EndpointErrors(NamedTuple):
    """The one-line errors one kind of endpoint raises, each built from the URL asked
    and a reason (and, for an error status, the status)."""

    connection: Callable[[str, str], RagtuneError]
    timeout: Callable[[str, str], RagtuneError]
    status: Callable[[str, str, int], RagtuneError]
    answer: Callable[[str, str], RagtuneError]  # an answer the protocol does not allow


def api_key(key_vars: tuple[str, ...]) -> str | None:
    """The API key: the first of ``key_vars`` set (and not empty) in the environment."""
    return next(iter(_api_keys(key_vars)), None)


def error_message(body: Any) -> str:
    """The server's own message in an error body, on one line and at most 200 characters:
    OpenAI's ``{"error": {"message": ...}}``, or ``{"error": ...}``, ``{"detail": ...}``,
    ``{"message": ...}`` as other servers write it; '' when there is none."""
    if not isinstance(body, dict):
        return ""
    error = body.get("error") or body.get("detail") or body.get("message") or ""
    if isinstance(error, dict):
        error = error.get("message", error)
    text = " ".join(str(error).split())
    return text if len(text) <= _DETAIL_CHARS else text[:_DETAIL_CHARS] + "..."


class OpenAIClient:
    """Requests to one OpenAI-compatible endpoint, as the module docstring says."""

    def __init__(
        self,
        *,
        key_vars: tuple[str, ...],
        errors: EndpointErrors,
        timeout: float,
        retries: int,
        backoff: float,
        accept: str = "application/json",
    ) -> None:
        self.key_vars = key_vars
        self.errors = errors
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.accept = accept
        self._deadline = Deadline()

    # -- requests --------------------------------------------------------------------

    def post_json(self, url: str, payload: dict[str, Any]) -> Any:
        """POST ``payload``, retried as the policy says; the answer's JSON."""
        with self.request("POST", url, payload) as response:
            response.read()
            return self.json(url, response)

    @contextmanager
    def request(
        self, method: str, url: str, payload: dict[str, Any] | None = None
    ) -> Iterator[httpx.Response]:
        """A response whose status is under 400, its body still to be read (a stream
        may be read piece by piece), all within the deadline. Retried on
        ``RETRY_STATUSES``; another error status raises the caller's status error."""
        attempt = 0
        while True:
            with self._transport_errors(url), self._deadline.within(self.timeout):
                response = self._send(method, url, payload)
                try:
                    if response.status_code < 400:
                        yield response
                        return
                    response.read()
                    if response.status_code not in RETRY_STATUSES or attempt >= self.retries:
                        raise self._status_error(url, response, attempt)
                finally:
                    response.close()
            attempt += 1
            time.sleep(self._wait(attempt, response))

    def probe_json(self, method: str, url: str, payload: dict[str, Any] | None = None) -> Any:
        """One try at an optional route (``/props``, ``/tokenize``): its JSON, or None
        when the server has no such route or answers with something else. A failed
        connection or a timeout still raises."""
        with self._transport_errors(url), self._deadline.within(self.timeout):
            response = self._send(method, url, payload)
            try:
                response.read()
            finally:
                response.close()
        if response.status_code != 200:
            return None
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None

    def json(self, url: str, response: httpx.Response) -> Any:
        """A read response's JSON; the caller's answer error when it is not JSON."""
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise self.answer_error(url, "the answer is not valid JSON") from None

    def answer_error(self, url: str, reason: str) -> RagtuneError:
        """The caller's error for an answer it cannot use, any API key masked."""
        return self.errors.answer(url, self._masked(reason))

    def close(self) -> None:
        if "_client" in self.__dict__:
            self._client.close()
            del self.__dict__["_client"]

    # -- the parts -------------------------------------------------------------------

    @cached_property
    def _client(self) -> httpx.Client:
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))
        return deadline_client(self._deadline, timeout=timeout)

    def _send(self, method: str, url: str, payload: dict[str, Any] | None) -> httpx.Response:
        headers = {"Accept": self.accept}
        key = api_key(self.key_vars)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = self._client.build_request(method, url, json=payload, headers=headers)
        return self._client.send(request, stream=True)

    def _wait(self, attempt: int, response: httpx.Response) -> float:
        asked = retry_after_seconds(response.headers.get("retry-after"))
        if asked is not None:
            return min(asked, MAX_RETRY_WAIT_S)
        return backoff_seconds(attempt, self.backoff)

    @contextmanager
    def _transport_errors(self, url: str) -> Iterator[None]:
        """httpx's transport failures as the caller's one-line errors."""
        try:
            yield
        except httpx.TimeoutException:
            raise self.errors.timeout(url, f"no answer within {self.timeout:g} s") from None
        except httpx.TransportError as error:
            reason = _connection_reason(error)
            raise self.errors.connection(url, self._masked(reason)) from None

    def _status_error(self, url: str, response: httpx.Response, attempt: int) -> RagtuneError:
        detail = _error_detail(response)
        reason = f"HTTP {response.status_code}" + (f": {detail}" if detail else "")
        if attempt:
            reason += f" after {attempt + 1} attempts"
        return self.errors.status(url, self._masked(reason), response.status_code)

    def _masked(self, text: str) -> str:
        return redact(text, *_api_keys(self.key_vars))


def _api_keys(key_vars: tuple[str, ...]) -> list[str]:
    """The API keys the environment holds, in the order they are looked for."""
    return [os.environ[name] for name in key_vars if os.environ.get(name)]


def _error_detail(response: httpx.Response) -> str:
    """The server's message in a read error response: from its JSON, or its plain text
    (an HTML error page says nothing a line can hold)."""
    try:
        return error_message(response.json())
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    if not response.headers.get("content-type", "").startswith("text/plain"):
        return ""
    return error_message({"error": response.text})


def _connection_reason(error: httpx.TransportError) -> str:
    if refused(error):
        return "connection refused"
    text = " ".join((str(error) or type(error).__name__).split())
    if isinstance(error, httpx.RemoteProtocolError):
        return f"the server broke the connection ({text[:160]})"
    return text[:200]
