"""Errors answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

Clients written for the OpenAI API (the ``openai`` package, Open WebUI, LibreChat) read
this shape to show what went wrong. A handler turns every failure into it: ``ApiError``
raised by a route, a request that fails validation (400, as OpenAI answers wrong types),
a ``RagtuneError`` from the product (its one-line message, with no internal paths), and
anything unexpected (500 with a fixed message: no traceback ever reaches a client).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragtune.errors import LLMError, RagtuneError
from ragtune.url_options import redact

log = logging.getLogger("ragtune.serve")

# OpenAI's error types by status, for errors that do not name their own.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_error",
}


class ApiError(Exception):
    """A failure a route answers with ``status`` and a one-line ``message``.

    ``headers`` go out with the answer (``Retry-After`` on 429/503,
    ``WWW-Authenticate`` on 401).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type_: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type_ or _TYPES.get(status, "server_error" if status >= 500 else "api_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)


def error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def one_line(text: str, limit: int = 300) -> str:
    """``text`` as one line of at most ``limit`` characters, secrets redacted."""
    line = " ".join(redact(str(text)).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# An absolute file path, not the path part of a URL (preceded by a host or a scheme).
_FILE_PATH = re.compile(r"(?<![\w:/.~-])/(?:[\w.@+~-]+/)*[\w.@+~-]+/?")


def hide_paths(text: str) -> str:
    """``text`` with absolute file paths replaced: a client learns nothing of the
    server's file system from an error."""
    return _FILE_PATH.sub("<path>", text)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        first = problems[0] if problems else {}
        where = [str(part) for part in first.get("loc", ()) if part not in ("body", "query")]
        param = ".".join(where) or None
        message = first.get("msg", "invalid request")
        text = f"{param}: {message}" if param else str(message)
        return error_response(ApiError(400, one_line(text), code="invalid_value", param=param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        message = error.detail if isinstance(error.detail, str) else "request failed"
        headers = dict(error.headers or {})
        return error_response(ApiError(error.status_code, one_line(message), headers=headers))

    @app.exception_handler(LLMError)
    async def model_error(_: Request, error: LLMError) -> JSONResponse:
        # The model failed, not the request: a server error the client may retry.
        message = one_line(hide_paths(str(error)))
        return error_response(ApiError(503, message, code="model_error", type_="server_error"))

    @app.exception_handler(RagtuneError)
    async def product_error(_: Request, error: RagtuneError) -> JSONResponse:
        # The product's errors are one line written for users: they may be shown.
        message = one_line(hide_paths(str(error)))
        return error_response(ApiError(400, message, code="ragtune_error"))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error while answering a request")
        return error_response(ApiError(500, "internal server error", type_="server_error"))
