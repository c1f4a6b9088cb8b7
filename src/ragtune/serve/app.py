"""``create_app(config)``: the FastAPI application ``ragtune serve`` runs.

The routers come from one module each (``openai_api``, ``sources_api``, ``ui``);
this module puts them together with what every request shares: the served indexes,
the error shape, and (in ``install_guards``) keys, rate limits, body limits and CORS.
"""

from __future__ import annotations

from fastapi import FastAPI

from ragtune.serve import openai_api, sources_api, ui
from ragtune.serve.config import ServeConfig
from ragtune.serve.errors import install_error_handlers
from ragtune.serve.state import ServedIndex, ServerState
from ragtune.version import __version__


def create_app(config: ServeConfig, state: ServerState | None = None) -> FastAPI:
    state = state or ServerState(config, {s.name: ServedIndex(s) for s in config.indexes})
    app = FastAPI(
        title="ragtune",
        version=__version__,
        description="RAG over your own indexes, OpenAI-compatible.",
    )
    app.state.ragtune = state
    install_error_handlers(app)
    app.include_router(openai_api.router)
    app.include_router(sources_api.router)
    app.include_router(ui.router)
    return app
