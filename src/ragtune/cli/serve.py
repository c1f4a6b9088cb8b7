"""``ragtune serve``: the OpenAI-compatible API and web UI; ``ragtune serve-key new``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ragtune.cli.options import AnswerModeOption, AnswerTokensOption, GroundingOption, ModeOption
from ragtune.errors import RagtuneError
from ragtune.terminal import err, out

if TYPE_CHECKING:
    from ragtune.serve.config import IndexSpec, ServeConfig

_RATE = re.compile(r"\s*(\d+)\s*(?:/\s*(?:m|min|minute))?\s*")


def serve_command(
    index: Annotated[
        list[str],
        typer.Option(
            "--index",
            "-i",
            help="An index to serve: DIR or NAME=DIR (repeatable; NAME is the `model` "
            "clients select; the first is the default).",
        ),
    ],
    host: Annotated[
        str,
        typer.Option(help="Address to bind. Anything but loopback needs --api-key-file."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            help="File of API key hashes (make keys with `ragtune serve-key new --file F`); "
            "clients send Authorization: Bearer KEY."
        ),
    ] = None,
    llm: Annotated[
        list[str] | None,
        typer.Option(
            help="The model that answers: SPEC for every index or NAME=SPEC for one "
            "(repeatable; specs as for ask; default: bundled SmolLM2).",
        ),
    ] = None,
    rate_limit: Annotated[
        str, typer.Option(help="Requests a minute per key (or per client without keys): N/min.")
    ] = "120/min",
    parallel: Annotated[
        int, typer.Option(min=1, max=64, help="Questions answered at once (llama.cpp slots).")
    ] = 4,
    queue_size: Annotated[
        int,
        typer.Option(min=0, max=1024, help="Questions that may wait for a slot; more get 429."),
    ] = 16,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=50, help="Passages.")] = 4,
    mode: ModeOption = "hybrid",
    answer: AnswerModeOption = None,
    answer_tokens: AnswerTokensOption = 256,
    grounding: GroundingOption = "strict",
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(help="Allow browser pages of this origin to call the API (repeatable)."),
    ] = None,
    allow_private_urls: Annotated[
        bool,
        typer.Option(
            help="Let ingestion through the server fetch private, loopback and link-local "
            "addresses (a trusted deployment only)."
        ),
    ] = False,
    url_allow_network: Annotated[
        list[str] | None,
        typer.Option(help="A private network ingestion may fetch from, e.g. 10.1.0.0/16."),
    ] = None,
    files_root: Annotated[
        Path | None,
        typer.Option(help="Local folders may be ingested through the server only under this."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where uploads and job records are kept.")
    ] = None,
    max_body_mb: Annotated[
        float, typer.Option(min=0.01, max=1024, help="Largest JSON request body, in MB.")
    ] = 1.0,
    max_upload_mb: Annotated[
        float, typer.Option(min=0.01, max=10240, help="Largest upload request, in MB.")
    ] = 50.0,
    drain_seconds: Annotated[
        float,
        typer.Option(min=0, max=3600, help="On SIGTERM, time given to answers in flight."),
    ] = 30.0,
) -> None:
    """Serve indexes over an OpenAI-compatible API, with a web UI at /.

    Point an OpenAI client at http://127.0.0.1:8000/v1 (API docs at /docs).
    """
    from ragtune.serve.config import ServeConfig, parse_index_spec

    specs = [parse_index_spec(value) for value in index]
    config = ServeConfig(
        indexes=_with_llms(specs, llm or []),
        host=host,
        port=port,
        api_key_file=api_key_file,
        rate_limit_per_minute=_rate(rate_limit),
        allow_private_urls=allow_private_urls,
        url_allow_networks=list(url_allow_network or []),
        files_root=files_root,
        data_dir=data_dir,
        cors_origins=list(cors_origin or []),
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        parallel=parallel,
        queue_size=queue_size,
        top_k=top_k,
        mode=mode,
        answer_mode=answer,
        answer_tokens=answer_tokens,
        grounding=grounding,
        drain_seconds=drain_seconds,
    )
    run_server(config)


def run_server(config: ServeConfig) -> None:
    """Load every index and model (failing fast), then serve until SIGTERM or Ctrl-C."""
    import signal

    import uvicorn

    from ragtune.serve.app import create_app, load_keys
    from ragtune.serve.state import ServerState

    load_keys(config)  # a non-loopback bind without keys fails before any model loads
    state = ServerState.from_config(config)
    state.load_models()
    app = create_app(config, state)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            timeout_graceful_shutdown=int(config.drain_seconds),
            log_level="warning",
            server_header=False,
        )
    )
    names = ", ".join(state.indexes)
    shown = f"[{config.host}]" if ":" in config.host else config.host
    err.print(
        f"serving {names} at http://{shown}:{config.port}/v1 "
        f"(web UI at /, API docs at /docs){'' if config.api_key_file else '; no API keys'}"
    )
    # uvicorn drains in-flight answers on SIGTERM, then raises the signal again to
    # end the process the way the signal would have: ignored here, so a drained
    # server exits 0 like any finished command.
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()


def _with_llms(specs: list[IndexSpec], llms: list[str]) -> list[IndexSpec]:
    """The index specs with their models: ``SPEC`` for all, ``NAME=SPEC`` for one."""
    from dataclasses import replace

    names = {spec.name for spec in specs}
    default: str | None = None
    per_index: dict[str, str] = {}
    for value in llms:
        name, separator, rest = value.partition("=")
        if separator and name in names:
            per_index[name] = rest.strip()
        elif default is None:
            default = value.strip()
        else:
            raise RagtuneError(
                f"--llm {value[:80]!r}: a second model for every index; "
                "name the index (--llm NAME=SPEC)"
            )
    return [replace(spec, llm=per_index.get(spec.name, default)) for spec in specs]


def _rate(text: str) -> int:
    match = _RATE.fullmatch(text)
    if match is None or int(match.group(1)) < 1:
        raise RagtuneError(f"--rate-limit {text[:40]!r}: write N/min, e.g. 120/min")
    return int(match.group(1))


def serve_key_new_command(
    file: Annotated[Path, typer.Option("--file", "-f", help="The API key file to append to.")],
    name: Annotated[
        str | None, typer.Option(help="A name for the key (shown nowhere but the file).")
    ] = None,
) -> None:
    """Make an API key: printed once on stdout, only its hash appended to --file.

    Give the file to ragtune serve --api-key-file; clients send Authorization: Bearer KEY.
    """
    from ragtune.serve.auth import new_key

    key = new_key(file, name)
    out.print(key)
    err.print(f"its hash was added to {file}; the key itself is shown only now")
