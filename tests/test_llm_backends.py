"""LLM backends chosen by a spec: the OpenAI-compatible one against real local HTTP servers.

The "real server" is llama.cpp's own llama-server code (inside the xllamacpp wheel) serving
the bundled SmolLM2 on 127.0.0.1; the failure cases use the tests' scriptable server
(tests/webserver.py), answering the way broken endpoints do.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.helpers import (
    LIGHTHOUSE_QUESTION,
    assert_one_line_error,
    ingest_lighthouse_docs,
    run_cli,
)
from tests.webserver import Reply, Request, Site, serve

from ragtune import VectorStoreIndex
from ragtune.assets import DEFAULT_LLM
from ragtune.errors import LLMError, ModelNotFoundError
from ragtune.llm import LLM, ChatMessage, load_llm
from ragtune.llm.llamacpp import LlamaCppLLM
from ragtune.llm.openai_compat import OpenAICompatibleLLM


@pytest.fixture(scope="module")
def llama() -> LlamaCppLLM:
    """The bundled SmolLM2, loaded once; its llama.cpp HTTP server is the real endpoint."""
    model = LlamaCppLLM()
    model.load()
    return model


@pytest.fixture(scope="module")
def endpoint(llama: LlamaCppLLM) -> str:
    return f"{llama.http_url}/v1"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ingest_lighthouse_docs(tmp_path_factory.mktemp("llm-backends"))


# -- the real server: llama.cpp's llama-server ------------------------------------------


def test_window_model_and_tokens_come_from_the_server(endpoint: str, llama: LlamaCppLLM) -> None:
    remote = load_llm(f"openai:{endpoint}")  # no model, no context: the server says both
    assert isinstance(remote, OpenAICompatibleLLM) and isinstance(remote, LLM)
    assert remote.context_window == llama.context_window
    assert remote.name  # the one model /v1/models lists
    text = "The lamp of the Brightwater lighthouse is green."
    assert remote.count_tokens(text) == llama.count_tokens(text)
    given = load_llm(f"{endpoint}?model=smol&context=1024")  # plain http(s) URL works too
    assert isinstance(given, OpenAICompatibleLLM)
    assert given.context_window == 1024 and given.name == "smol"


def test_engine_answers_and_streams_through_the_endpoint(endpoint: str, index_dir: Path) -> None:
    # The backend's own streaming, token by token: nothing held back by sentence.
    engine = VectorStoreIndex.load(index_dir).as_query_engine(
        llm=f"openai:{endpoint}?model=smol",
        answer_tokens=48,
        answer_mode="generate",
        grounding="off",
    )
    response = engine.query(LIGHTHOUSE_QUESTION)
    assert "green" in response.response.lower()
    assert response.source_nodes[0].metadata["url"].endswith("lighthouse.md")
    assert response.metadata["prompt_tokens"] < engine.llm.context_window

    tokens, streamed = engine.stream(LIGHTHOUSE_QUESTION)
    pieces = list(tokens)
    assert len(pieces) > 3
    assert streamed.response == "".join(pieces).strip()
    assert "green" in streamed.response.lower()


def test_cli_ask_through_the_endpoint(endpoint: str, index_dir: Path) -> None:
    result = run_cli(
        "ask", LIGHTHOUSE_QUESTION, "--index", str(index_dir), "--llm", f"openai:{endpoint}"
    )
    assert result.returncode == 0, result.stderr
    answer, _, sources = result.stdout.partition("Sources")
    assert "green" in answer.lower()
    assert "lighthouse.md" in sources


# -- broken endpoints: the tests' scriptable server ---------------------------------------


def _json(
    status: int, body: bytes, content_type: str = "application/json", **headers: str
) -> Reply:
    return Reply(status, body, headers=headers, content_type=content_type)


def _completion(text: str) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()


def _late(request: Request) -> Reply:
    time.sleep(3)
    return _json(200, _completion("late"))


@pytest.fixture(scope="module")
def broken_site() -> Iterator[Site]:
    """``/MODE/v1/chat/completions`` answers the way MODE says; other routes are 404."""
    with serve(Site()) as site:

        def busy_twice(request: Request) -> Reply:
            if len(site.requests_for(request.path)) <= 2:
                return _json(503, b'{"error": "loading"}', **{"Retry-After": "0"})
            return _json(200, _completion("ready now"))

        modes: dict[str, Reply | Callable[[Request], Reply]] = {
            "hang": _late,
            # Retry-After 0: a 500 is retried, and these tests need not wait for the backoff.
            "fail": _json(
                500,
                b'{"error": {"message": "the model crashed", "code": 500}}',
                **{"Retry-After": "0"},
            ),
            "garbage": _json(200, b'{"choices": [{"mess'),
            "badsse": _json(200, b'data: {"choices": [{"del\n\n', "text/event-stream"),
            "nochoices": _json(200, b'{"choices": []}'),
            "busy": busy_twice,
        }
        for mode, reply in modes.items():
            site.routes[f"/{mode}/v1/chat/completions"] = reply
        yield site


@pytest.fixture(scope="module")
def broken_url(broken_site: Site) -> str:
    return broken_site.base


def _broken(broken_url: str, mode: str, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"model": "m", "context": "2048", **options}.items())
    return f"openai:{broken_url}/{mode}/v1?{query}"


MESSAGES: list[ChatMessage] = [{"role": "user", "content": "Hello?"}]


@pytest.mark.parametrize(
    ("mode", "fragment"),
    [
        ("garbage", "not valid JSON"),
        ("nochoices", "no choices"),
        ("fail", "HTTP 500: the model crashed"),
    ],
)
def test_bad_answers_are_one_line_llm_errors(broken_url: str, mode: str, fragment: str) -> None:
    llm = load_llm(_broken(broken_url, mode))
    with pytest.raises(LLMError, match=fragment) as caught:
        llm.chat(MESSAGES)
    assert "\n" not in str(caught.value)


def test_malformed_event_stream_is_an_llm_error(broken_url: str) -> None:
    llm = load_llm(_broken(broken_url, "badsse"))
    with pytest.raises(LLMError, match="malformed JSON"):
        list(llm.stream_chat(MESSAGES))


def test_503_is_retried_and_tokens_are_estimated(broken_url: str, broken_site: Site) -> None:
    llm = load_llm(_broken(broken_url, "busy"))
    assert llm.chat(MESSAGES) == "ready now"
    assert len(broken_site.requests_for("/busy/v1/chat/completions")) == 3
    assert llm.count_tokens("abcdefg") == 3  # no /tokenize here: one token per 3 bytes, rounded up


def test_api_key_is_sent_but_never_shown(
    broken_url: str, broken_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGTUNE_LLM_API_KEY", "sk-secret-123")
    llm = load_llm(_broken(broken_url, "fail"))
    with pytest.raises(LLMError) as caught:
        llm.chat(MESSAGES)
    assert "sk-secret" not in str(caught.value) + repr(llm) + str(vars(llm))
    sent = broken_site.requests_for("/fail/v1/chat/completions")[-1]
    assert sent.headers["authorization"] == "Bearer sk-secret-123"


# -- every bad input through `ragtune ask`: one line, non-zero exit ----------------------


def test_cli_endpoint_failures_are_one_line(
    broken_url: str, closed_port_url: str, index_dir: Path
) -> None:
    cases = [
        (f"openai:{closed_port_url}v1?model=m", ["connection refused"]),
        (_broken(broken_url, "hang", timeout="1"), ["no answer within 1 s"]),
        (_broken(broken_url, "fail"), ["HTTP 500", "the model crashed"]),
        (_broken(broken_url, "garbage"), ["not valid JSON"]),
    ]
    for spec, fragments in cases:
        result = run_cli("ask", LIGHTHOUSE_QUESTION, "--index", str(index_dir), "--llm", spec)
        assert_one_line_error(result, *fragments)


def test_cli_bad_specs_and_model_files_are_one_line(tmp_path: Path, index_dir: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    with DEFAULT_LLM.require().open("rb") as whole:
        truncated.write_bytes(whole.read(1_000_000))  # a real header, most tensors missing
    cases = [
        ("foo:bar", ["unknown LLM spec 'foo:bar'", "openai:http://"]),
        ("ftp://example.com/model", ["unknown LLM spec", ".gguf"]),
        ("hf:/nowhere", ["model directory /nowhere does not exist"]),
        ("model.bin", ["expected a .gguf file"]),
        ("openai:http://127.0.0.1:1/v1?context=lots", ["malformed option"]),
        (str(tmp_path / "missing.gguf"), ["does not exist"]),
        (f"gguf:{truncated}", ["cannot load"]),
    ]
    for spec, fragments in cases:
        result = run_cli("ask", LIGHTHOUSE_QUESTION, "--index", str(index_dir), "--llm", spec)
        assert_one_line_error(result, *fragments)


def test_load_llm_keeps_objects_and_reads_paths(llama: LlamaCppLLM, tmp_path: Path) -> None:
    assert load_llm(llama) is llama
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_llm(tmp_path / "missing.gguf")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_llm(f"llamacpp:{tmp_path / 'missing.gguf'}")
