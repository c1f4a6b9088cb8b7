"""LLM backends chosen by a spec: the OpenAI-compatible one against real local HTTP servers.

The "real server" is llama.cpp's own llama-server code (inside the xllamacpp wheel) serving
the bundled SmolLM2 on 127.0.0.1; the failure cases use a small threaded HTTP server of the
tests that answers the way broken endpoints do.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.conftest import assert_one_line_error, run_cli

from ragtune import VectorStoreIndex
from ragtune.assets import DEFAULT_LLM
from ragtune.errors import LLMError, ModelNotFoundError
from ragtune.llm import LLM, ChatMessage, load_llm
from ragtune.llm.llamacpp import LlamaCppLLM
from ragtune.llm.openai_compat import OpenAICompatibleLLM

QUESTION = "What colour is the lamp of the Brightwater lighthouse?"
DOCS = {
    "lighthouse.md": "# Brightwater lighthouse\n\nThe lamp of the Brightwater lighthouse is green. "
    "It was lit for the first time in 1911 and can be seen from 30 kilometres away.\n",
    "bakery.md": "# Juniper bakery\n\nThe Juniper bakery sells rye bread and cinnamon buns. "
    "It opens at seven in the morning, every day except Monday.\n",
}


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
    return ingest_docs(tmp_path_factory.mktemp("llm-backends"))


def ingest_docs(base: Path) -> Path:
    """DOCS written as files under ``base`` and ingested by the CLI: ``base/index``."""
    docs = base / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    result = run_cli("ingest", str(docs), "--index", str(base / "index"))
    assert result.returncode == 0, result.stderr
    return base / "index"


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
    engine = VectorStoreIndex.load(index_dir).as_query_engine(
        llm=f"openai:{endpoint}?model=smol", answer_tokens=48
    )
    response = engine.query(QUESTION)
    assert "green" in response.response.lower()
    assert response.source_nodes[0].metadata["url"].endswith("lighthouse.md")
    assert response.metadata["prompt_tokens"] < engine.llm.context_window

    tokens, streamed = engine.stream(QUESTION)
    pieces = list(tokens)
    assert len(pieces) > 3
    assert streamed.response == "".join(pieces).strip()
    assert "green" in streamed.response.lower()


def test_cli_ask_through_the_endpoint(endpoint: str, index_dir: Path) -> None:
    result = run_cli("ask", QUESTION, "--index", str(index_dir), "--llm", f"openai:{endpoint}")
    assert result.returncode == 0, result.stderr
    answer, _, sources = result.stdout.partition("Sources")
    assert "green" in answer.lower()
    assert "lighthouse.md" in sources


# -- broken endpoints: a small real HTTP server of the tests ------------------------------


class Broken(BaseHTTPRequestHandler):
    """``/MODE/v1/chat/completions`` answers the way MODE says; other routes are 404."""

    calls: dict[str, int] = {}

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        mode, _, route = self.path.strip("/").partition("/")
        if route != "v1/chat/completions":
            return self._send(404, "application/json", b'{"error": "not found"}')
        Broken.calls[mode] = Broken.calls.get(mode, 0) + 1
        if mode == "hang":
            time.sleep(3)
            return self._send(200, "application/json", _completion("late"))
        if mode == "fail":
            body = b'{"error": {"message": "the model crashed", "code": 500}}'
            return self._send(500, "application/json", body)
        if mode == "garbage":
            return self._send(200, "application/json", b'{"choices": [{"mess')
        if mode == "badsse":
            return self._send(200, "text/event-stream", b'data: {"choices": [{"del\n\n')
        if mode == "nochoices":
            return self._send(200, "application/json", b'{"choices": []}')
        if mode == "busy":  # 503 twice, then an answer
            if Broken.calls[mode] <= 2:
                return self._send(503, "application/json", b'{"error": "loading"}', retry=True)
            return self._send(200, "application/json", _completion("ready now"))
        self._send(404, "application/json", b"{}")

    def _send(self, status: int, content_type: str, body: bytes, retry: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if retry:
            self.send_header("Retry-After", "0")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)  # unless the client gave up waiting, as it should

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def _completion(text: str) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()


@pytest.fixture(scope="module")
def broken_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


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


def test_503_is_retried_and_tokens_are_estimated(broken_url: str) -> None:
    llm = load_llm(_broken(broken_url, "busy"))
    assert llm.chat(MESSAGES) == "ready now"
    assert Broken.calls["busy"] == 3
    assert llm.count_tokens("abcdefg") == 3  # no /tokenize here: one token per 3 bytes, rounded up


def test_api_key_is_sent_but_never_shown(broken_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGTUNE_LLM_API_KEY", "sk-secret-123")
    llm = load_llm(_broken(broken_url, "fail"))
    assert llm._headers()["Authorization"] == "Bearer sk-secret-123"  # type: ignore[attr-defined]
    with pytest.raises(LLMError) as caught:
        llm.chat(MESSAGES)
    assert "sk-secret" not in str(caught.value) + repr(llm) + str(vars(llm))


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
        result = run_cli("ask", QUESTION, "--index", str(index_dir), "--llm", spec)
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
        result = run_cli("ask", QUESTION, "--index", str(index_dir), "--llm", spec)
        assert_one_line_error(result, *fragments)


def test_load_llm_keeps_objects_and_reads_paths(llama: LlamaCppLLM, tmp_path: Path) -> None:
    assert load_llm(llama) is llama
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_llm(tmp_path / "missing.gguf")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_llm(f"llamacpp:{tmp_path / 'missing.gguf'}")
