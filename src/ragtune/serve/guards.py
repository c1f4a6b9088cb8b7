"""What every request passes before a route sees it: key, rate limit, body size.

Plain ASGI middleware rather than FastAPI dependencies, so that each router (the
OpenAI routes, the ingest routes, the UI) is covered without doing anything, and so
that a body is limited while it arrives: a ``Content-Length`` over the limit is
answered 413 at once, and a body without one (chunked) is counted as it is read and
cut off at the limit, never read whole into memory.

Which paths need a key: the API (``/v1/...``) and ``/metrics``. Open: ``/health``
(a load balancer's probe; it tells index names and sizes, nothing more), the
OpenAPI docs (``/docs``, ``/openapi.json``: the shapes of the API, nothing about the
data) and the web UI's pages, which hold no data and call the API with the key the
user types in.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragtune.serve.auth import KeyRing, RateLimiter, retry_after
from ragtune.serve.config import ServeConfig
from ragtune.serve.errors import ApiError
from ragtune.serve.metrics import REJECTED

PROTECTED_PREFIXES = ("/v1/", "/metrics")
UPLOAD_PATHS = frozenset({"/v1/ingest"})


class RequestGuard:
    """API keys, rate limits and body limits for every HTTP request."""

    def __init__(self, app: ASGIApp, config: ServeConfig, keys: KeyRing | None) -> None:
        self.app = app
        self.config = config
        self.keys = keys
        self.limiter = RateLimiter(config.rate_limit_per_minute)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope.get("path", "")
        try:
            if scope.get("method") != "OPTIONS" and path.startswith(PROTECTED_PREFIXES):
                self._admit(scope, headers)
            limit = self._body_limit(scope, headers)
        except ApiError as error:
            await _refuse(error, scope, receive, send)
            return
        await self.app(scope, _limited(receive, limit), _hardened(send))

    def _admit(self, scope: Scope, headers: Headers) -> None:
        """Raise 401 without a valid key, 429 when the caller's bucket is empty."""
        if self.keys is not None:
            caller = self.keys.identify(_presented_key(headers))
            if caller is None:
                REJECTED.labels("unauthorized").inc()
                raise ApiError(
                    401,
                    "a valid API key is required (Authorization: Bearer KEY or x-api-key)",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            caller = f"key:{caller}"
        else:
            client = scope.get("client")
            caller = f"address:{client[0] if client else 'unknown'}"
        wait = self.limiter.take(caller)
        if wait > 0:
            REJECTED.labels("rate_limited").inc()
            raise ApiError(
                429,
                f"rate limit of {self.config.rate_limit_per_minute} requests a minute reached",
                code="rate_limit_exceeded",
                headers={"Retry-After": retry_after(wait)},
            )

    def _body_limit(self, scope: Scope, headers: Headers) -> int:
        content_type = headers.get("content-type", "").lower()
        uploading = (
            scope.get("method") == "POST"
            and scope.get("path") in UPLOAD_PATHS
            and content_type.startswith("multipart/form-data")
        )
        limit = self.config.max_upload_bytes if uploading else self.config.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise ApiError(400, "Content-Length is not a number", code="invalid_request")
            if int(declared) > limit:
                raise too_large(limit)
        return limit


def too_large(limit: int) -> ApiError:
    REJECTED.labels("too_large").inc()
    return ApiError(
        413, f"the request body is over the limit of {limit} bytes", code="request_too_large"
    )


def _presented_key(headers: Headers) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip() or None


def _limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that counts body bytes and refuses the request past ``limit``."""
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                # An HTTPException passes through FastAPI's body parsing untouched and
                # is answered in OpenAI's shape by serve/errors.py.
                error = too_large(limit)
                raise HTTPException(413, error.message)
        return message

    return receive_limited


def _hardened(send: Send) -> Send:
    """Headers every response carries: no MIME sniffing of what the API returns."""

    async def send_hardened(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {name.lower() for name, _ in headers}
            if b"x-content-type-options" not in names:
                headers.append((b"x-content-type-options", b"nosniff"))
            message = {**message, "headers": headers}
        await send(message)

    return send_hardened


async def _refuse(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse(error.body(), status_code=error.status, headers=error.headers)
    await response(scope, receive, _hardened(send))
