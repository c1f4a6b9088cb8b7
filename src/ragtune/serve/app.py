"""``create_app(config)``: the FastAPI application ``ragtune serve`` runs.

The routers come from one module each (``openai_api``, ``sources_api``, ``ui``);
this module puts them together with what every request shares: the served indexes,
the answer slots, the error shape, and (in ``install_guards``) keys, rate limits,
body limits and CORS.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from ragtune.errors import RagtuneError
from ragtune.serve import openai_api, sources_api, ui
from ragtune.serve.auth import KeyRing
from ragtune.serve.config import ServeConfig
from ragtune.serve.errors import install_error_handlers
from ragtune.serve.guards import RequestGuard
from ragtune.serve.metrics import MetricsMiddleware
from ragtune.serve.slots import AnswerSlots
from ragtune.serve.state import ServerState
from ragtune.version import __version__


def create_app(config: ServeConfig, state: ServerState | None = None) -> FastAPI:
    """The app; refuses a non-loopback address without API keys (RagtuneError)."""
    keys = load_keys(config)
    state = state or ServerState.from_config(config)
    app = FastAPI(
        title="ragtune",
        version=__version__,
        description="RAG over your own indexes, OpenAI-compatible.",
    )
    app.state.ragtune = state
    app.state.slots = AnswerSlots(config.parallel, config.queue_size)
    install_error_handlers(app)
    app.include_router(openai_api.router)
    app.include_router(sources_api.router)
    app.include_router(ui.router)
    install_guards(app, config, keys)
    return app


def load_keys(config: ServeConfig) -> KeyRing | None:
    """The API keys; none is allowed only on a loopback address."""
    if config.api_key_file is not None:
        return KeyRing.load(config.api_key_file)
    if not config.loopback_only:
        raise RagtuneError(
            f"binding {config.host} exposes the API beyond this machine: give "
            "--api-key-file (make a key with `ragtune serve-key new --file FILE`)"
        )
    return None


def install_guards(app: FastAPI, config: ServeConfig, keys: KeyRing | None) -> None:
    """Middleware, outermost last: CORS answers preflights and labels every answer,
    errors included; then metrics see every request; then keys, rate and body limits."""
    app.add_middleware(RequestGuard, config=config, keys=keys)
    app.add_middleware(MetricsMiddleware)
    if config.cors_origins:  # off unless the operator names the origins
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "x-api-key"],
            max_age=600,
        )
