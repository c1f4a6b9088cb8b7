"""``ragtune serve``: an OpenAI-compatible API and a web UI over one or more indexes.

``create_app(config)`` (``app.py``) builds the FastAPI application; the CLI runs it
under uvicorn. The parts, one concern each:

- ``config.py`` what the operator chose (indexes, bind address, keys, limits);
- ``state.py`` the served indexes: the last committed state each question reads, and
  the one writer per index that ingests, syncs and deletes go through;
- ``errors.py`` every error answered in OpenAI's shape, never a traceback;
- ``openai_api.py`` ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``,
  ``/v1/retrieve``; ``sources_api.py`` ingest and sync jobs, documents; ``ui.py`` the
  web pages at ``/``.

Only ``ragtune.cli`` imports this package.
"""
