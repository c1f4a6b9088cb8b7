"""Embedding backends: ONNX fp32 / int8 against PyTorch, the export cache, and an
OpenAI-compatible endpoint served for real on 127.0.0.1 by the test."""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.helpers import assert_one_line_error, run_cli
from tests.webserver import Reply, Request, Site, serve

from ragtune.assets import DEFAULT_EMBEDDER
from ragtune.errors import (
    EmbedderConfigError,
    EmbeddingConnectionError,
    EmbeddingHTTPError,
    EmbeddingResponseError,
    EmbeddingTimeoutError,
    ModelNotFoundError,
    RagtuneError,
)
from ragtune.index.embedding import (
    DEFAULT_BACKEND,
    Embedder,
    OpenAIEmbedder,
    make_embedder,
    onnx_backend,
)

pytestmark = pytest.mark.skipif(
    DEFAULT_EMBEDDER.locate() is None, reason="the MiniLM embedder wheel is not installed"
)

QUERIES = [
    "What flavour is the dark energy potion?",
    "Which river flows through Paris?",
    "How long does the moon take to orbit the earth?",
]
PASSAGES = [
    "The dark energy potion tastes of blackcurrant and smoked vanilla.",
    "Paris, the capital of France, lies on the Seine.",
    "The moon orbits the earth every 27.3 days, a sidereal month.",
    "Our lighthouse workshop teaches lens grinding on Saturdays.",
]


def one_line(error: BaseException) -> str:
    message = str(error)
    assert message and "\n" not in message, repr(message)
    return message


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private ONNX cache for the session: the export happens once, here."""
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("ragtune-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAGTUNE_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="session")
def torch_embedder() -> Embedder:
    return Embedder(backend="torch")


@pytest.fixture(scope="session")
def onnx_embedder(onnx_cache: Path) -> Embedder:
    embedder = Embedder(backend="onnx")
    embedder.embed(["warm up"])
    return embedder


@pytest.fixture(scope="session")
def int8_embedder(onnx_cache: Path) -> Embedder:
    embedder = Embedder(backend="onnx-int8")
    embedder.embed(["warm up"])
    return embedder


def test_onnx_vectors_match_torch(torch_embedder: Embedder, onnx_embedder: Embedder) -> None:
    # A long text too, to check that truncation at 256 word pieces matches.
    texts = [*QUERIES, *PASSAGES, "lighthouse " * 400, "   padded   "]
    expected = torch_embedder.embed(texts)
    got = onnx_embedder.embed(texts)
    assert got.shape == expected.shape == (len(texts), 384)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert ((got * expected).sum(axis=1) > 0.99).all()
    assert onnx_embedder.embed_query(QUERIES[0]) @ expected[0] > 0.99


def test_int8_is_close_and_ranks_alike(torch_embedder: Embedder, int8_embedder: Embedder) -> None:
    texts = [*QUERIES, *PASSAGES]
    expected = torch_embedder.embed(texts)
    got = int8_embedder.embed(texts)
    assert ((got * expected).sum(axis=1) > 0.95).all()
    n = len(QUERIES)
    torch_top = (expected[:n] @ expected[n:].T).argmax(axis=1)
    int8_top = (got[:n] @ got[n:].T).argmax(axis=1)
    assert list(int8_top) == list(torch_top) == [0, 1, 2]


def test_surface_is_the_same_for_every_backend(
    torch_embedder: Embedder, int8_embedder: Embedder
) -> None:
    for embedder in (torch_embedder, int8_embedder):
        assert embedder.dimensions == 384
        assert embedder.max_tokens == 256
        assert embedder.count_tokens("hello world") == 2
        assert embedder.embed([]).shape == (0, 384)
    assert int8_embedder.backend == "onnx-int8"
    assert int8_embedder.spec == torch_embedder.spec == str(torch_embedder.model_path)


def test_cache_is_reused_without_exporting_again(
    onnx_cache: Path, onnx_embedder: Embedder, int8_embedder: Embedder
) -> None:
    files = sorted(onnx_cache.glob("onnx/*/*.onnx"))
    assert [f.name for f in files] == ["model.onnx", "model_int8.onnx"]
    before = {f: f.stat().st_mtime_ns for f in files}
    exports = onnx_backend.export_count
    for backend in ("onnx", "onnx-int8"):
        Embedder(backend=backend).embed(["again"])
    assert onnx_backend.export_count == exports
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert not list((onnx_cache / "onnx").glob(".tmp-*"))


@pytest.fixture
def cache_copy(
    onnx_cache: Path, onnx_embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A copy of the fp32 cache that a test may damage."""
    monkeypatch.setenv("RAGTUNE_CACHE_DIR", str(tmp_path))
    source = onnx_embedder.onnx_encoder.model_file.parent
    shutil.copytree(source, tmp_path / "onnx" / source.name)
    return tmp_path / "onnx" / source.name


def test_corrupt_cache_is_rebuilt(cache_copy: Path, torch_embedder: Embedder) -> None:
    model = cache_copy / "model.onnx"
    model.write_bytes(
        b"\0garbage" * (model.stat().st_size // 8) + b"\0" * (model.stat().st_size % 8)
    )
    exports = onnx_backend.export_count
    vectors = Embedder(backend="onnx").embed(PASSAGES)
    assert onnx_backend.export_count == exports + 1
    assert ((vectors * torch_embedder.embed(PASSAGES)).sum(axis=1) > 0.99).all()


def test_half_written_cache_is_rebuilt(cache_copy: Path) -> None:
    (cache_copy / "export.json").unlink()  # as if the export had been killed before renaming
    exports = onnx_backend.export_count
    Embedder(backend="onnx").embed(["x"])
    assert onnx_backend.export_count == exports + 1
    assert json.loads((cache_copy / "export.json").read_text())["variant"] == "fp32"


def test_cache_that_cannot_load_gives_one_line(
    cache_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(model_file: Path, threads: int) -> None:
        raise RuntimeError("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF\nsecond line")

    monkeypatch.setattr(onnx_backend, "_session", broken)
    with pytest.raises(ModelNotFoundError) as caught:
        Embedder(backend="onnx").embed(["x"])
    assert "INVALID_PROTOBUF" in one_line(caught.value)


def test_unsupported_model_layout_gives_one_line(tmp_path: Path, onnx_cache: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(
        DEFAULT_EMBEDDER.require(), model, ignore=shutil.ignore_patterns("*.safetensors")
    )
    (model / "model.safetensors").symlink_to(DEFAULT_EMBEDDER.require() / "model.safetensors")
    modules = json.loads((model / "modules.json").read_text())
    modules.append(
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (model / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelNotFoundError) as caught:
        Embedder(model, backend="onnx").embed(["x"])
    assert "Dense" in one_line(caught.value)


def test_make_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGTUNE_EMBED_BACKEND", raising=False)
    default = make_embedder(None)
    # int8 ONNX wherever the onnx extra is installed, as `make setup` does.
    assert isinstance(default, Embedder) and default.backend == DEFAULT_BACKEND == "onnx-int8"
    assert make_embedder(DEFAULT_EMBEDDER.require(), "onnx-int8").backend == "onnx-int8"
    assert make_embedder(default) is default
    monkeypatch.setenv("RAGTUNE_EMBED_BACKEND", "onnx")
    assert make_embedder(str(DEFAULT_EMBEDDER.require())).backend == "onnx"
    remote = make_embedder("openai:http://127.0.0.1:9/v1?model=m&max_tokens=512&dimensions=8")
    assert isinstance(remote, OpenAIEmbedder)
    assert (remote.base_url, remote.name, remote.max_tokens, remote.dimensions) == (
        "http://127.0.0.1:9/v1",
        "m",
        512,
        8,
    )
    assert remote.spec == "openai:http://127.0.0.1:9/v1?model=m&max_tokens=512"
    assert isinstance(make_embedder("https://example.org/v1?model=e"), OpenAIEmbedder)
    for spec, backend in (
        (None, "tensorrt"),
        ("openai:http://127.0.0.1:9/v1", None),  # no model
        ("openai:http://127.0.0.1:9/v1?model=m", "onnx"),
        ("openai:http://127.0.0.1:9/v1?model=m&batch_size=lots", None),
    ):
        with pytest.raises(EmbedderConfigError) as caught:
            make_embedder(spec, backend)
        one_line(caught.value)
    with pytest.raises(ModelNotFoundError):
        make_embedder("/nonexistent/model/dir")


# --- an OpenAI-compatible endpoint, for real, on 127.0.0.1 -----------------------------


@dataclass
class EmbeddingsServer:
    """Answers POST /v1/embeddings on the tests' scriptable server; ``behave`` may
    replace the answer for a test."""

    embed: Callable[[list[str]], np.ndarray]
    site: Site = field(default_factory=Site)
    behave: Callable[[list[str]], tuple[int, bytes] | None] | None = None

    @property
    def base(self) -> str:
        return f"{self.site.base}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        return [request.json() for request in self.site.requests_for("/v1/embeddings")]

    @property
    def authorizations(self) -> list[str | None]:
        return [r.headers.get("authorization") for r in self.site.requests_for("/v1/embeddings")]

    def reply(self, request: Request) -> Reply:
        status, body = self.answer(list(request.json()["input"]))
        return Reply(status, body, content_type="application/json")

    def answer(self, texts: list[str]) -> tuple[int, bytes]:
        if self.behave is not None:
            reply = self.behave(texts)
            if reply is not None:
                return reply
        # Scaled by 3: the client must normalise what it gets.
        vectors = self.embed(texts) * 3.0
        data = [
            {"object": "embedding", "index": i, "embedding": [float(x) for x in v]}
            for i, v in reversed(list(enumerate(vectors)))  # out of order, as the spec allows
        ]
        return 200, json.dumps({"object": "list", "data": data, "model": "minilm"}).encode()


@pytest.fixture(scope="module")
def endpoint(torch_embedder: Embedder) -> Iterator[EmbeddingsServer]:
    server = EmbeddingsServer(embed=torch_embedder.embed)
    server.site.routes["/v1/embeddings"] = server.reply
    with serve(server.site):
        yield server


@pytest.fixture
def server(endpoint: EmbeddingsServer) -> Iterator[EmbeddingsServer]:
    endpoint.behave = None
    endpoint.site.log.clear()
    yield endpoint
    endpoint.behave = None


def client(server: EmbeddingsServer, **options: object) -> OpenAIEmbedder:
    settings: dict[str, object] = {"backoff": 0.0, "timeout": 5.0}
    settings.update(options)
    return OpenAIEmbedder(server.base, "all-MiniLM-L6-v2", **settings)


def test_openai_endpoint_gives_the_local_vectors(
    server: EmbeddingsServer, torch_embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    monkeypatch.delenv("RAGTUNE_EMBED_API_KEY", raising=False)
    remote = make_embedder(f"openai:{server.base}?model=all-MiniLM-L6-v2&batch_size=3")
    assert isinstance(remote, OpenAIEmbedder)
    texts = [*QUERIES, *PASSAGES]
    vectors = remote.embed(texts)
    expected = torch_embedder.embed(texts)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert ((vectors * expected).sum(axis=1) > 0.9999).all()
    assert [len(r["input"]) for r in server.requests] == [3, 3, 1]
    assert server.requests[0]["model"] == "all-MiniLM-L6-v2"
    assert server.authorizations[0] == "Bearer sk-test-123"
    assert "sk-test" not in remote.spec and "sk-test" not in repr(vars(remote))
    # One probe finds the dimensions; the tokenizer is local (MiniLM's by default).
    requests = len(server.requests)
    assert remote.dimensions == 384
    assert len(server.requests) == requests + 1
    assert remote.max_tokens == 256
    assert remote.count_tokens("hello world") == 2
    assert remote.embed_query(QUERIES[1]) @ expected[1] > 0.9999
    assert remote.embed([]).shape == (0, 384)


def test_openai_endpoint_retries_429_then_succeeds(server: EmbeddingsServer) -> None:
    calls: list[int] = []

    def busy_twice(texts: list[str]) -> tuple[int, bytes] | None:
        calls.append(1)
        return (429, b'{"error": {"message": "slow down"}}') if len(calls) <= 2 else None

    server.behave = busy_twice
    assert client(server, retries=3).embed(["x"]).shape == (1, 384)
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("reply", "error_type", "words"),
    [
        (
            (500, b'{"error": {"message": "model\\nexploded"}}'),
            EmbeddingHTTPError,
            "HTTP 500: model exploded after 2 attempts",
        ),
        ((401, b'{"error": {"message": "bad key"}}'), EmbeddingHTTPError, "HTTP 401: bad key"),
        ((200, b'{"data": [{"embedding": [0.1, 0.2'), EmbeddingResponseError, "not valid JSON"),
        (
            (200, b'{"data": [{"embedding": [1.0, 0.0], "index": 0}]}'),
            EmbeddingResponseError,
            "1 vectors returned for 2 texts",
        ),
        (
            (200, b'{"data": [{"embedding": [1.0, 0.0]}, {"embedding": [1.0]}]}'),
            EmbeddingResponseError,
            "inconsistent dimensions 1 and 2",
        ),
        (
            (200, b'{"data": [{"embedding": "nope"}, {"embedding": [1.0]}]}'),
            EmbeddingResponseError,
            'no "embedding" list',
        ),
        ((200, b'{"object": "list"}'), EmbeddingResponseError, 'no "data" list'),
    ],
)
def test_openai_endpoint_failures_are_one_line(
    server: EmbeddingsServer,
    reply: tuple[int, bytes],
    error_type: type[RagtuneError],
    words: str,
) -> None:
    server.behave = lambda texts: reply
    with pytest.raises(error_type) as caught:
        client(server, retries=1).embed(["one", "two"])
    message = one_line(caught.value)
    assert words in message and server.base in message


def test_openai_endpoint_dimensions_must_not_change(server: EmbeddingsServer) -> None:
    remote = client(server)
    assert remote.dimensions == 384
    server.behave = lambda texts: (200, json.dumps({"data": [{"embedding": [1.0] * 8}]}).encode())
    with pytest.raises(EmbeddingResponseError) as caught:
        remote.embed(["x"])
    assert "8-dimensional vectors, expected 384" in one_line(caught.value)


def test_openai_endpoint_timeout_is_one_line(server: EmbeddingsServer) -> None:
    def slow(texts: list[str]) -> None:
        time.sleep(1.5)

    server.behave = slow
    started = time.monotonic()
    with pytest.raises(EmbeddingTimeoutError) as caught:
        client(server, timeout=0.3).embed(["x"])
    assert time.monotonic() - started < 1.4
    assert "no answer within 0.3 s" in one_line(caught.value)


def test_openai_endpoint_refusing_connections_is_one_line() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    remote = OpenAIEmbedder(f"http://127.0.0.1:{port}/v1", "m")
    with pytest.raises(EmbeddingConnectionError) as caught:
        remote.embed(["x"])
    assert one_line(caught.value) == (
        f"embedding endpoint http://127.0.0.1:{port}/v1/embeddings: connection refused"
    )
    with pytest.raises(EmbeddingConnectionError):
        _ = remote.dimensions  # the probe fails the same way


def test_index_built_and_queried_through_an_endpoint(
    server: EmbeddingsServer, tmp_path: Path
) -> None:
    """`ingest --embed-model openai:...` records the endpoint; later commands use it."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "kites.md").write_text("# Kites\n\nThe griffin kite costs 89 dollars.\n")
    (notes / "lamps.md").write_text("# Lamps\n\nThe lighthouse lamp burns for 40 hours.\n")
    index = tmp_path / "idx"
    spec = f"openai:{server.base}?model=all-MiniLM-L6-v2"
    made = run_cli("ingest", str(notes), "--index", str(index), "--embed-model", spec)
    assert made.returncode == 0, made.stderr
    manifest = json.loads((index / "ragtune.json").read_text())
    assert manifest["embedder_backend"] == "openai"
    assert manifest["embedder_path"].startswith("openai:http://127.0.0.1")
    embedded = sum(len(r["input"]) for r in server.requests)
    assert embedded >= 2

    found = run_cli("retrieve", "lamp hours", "--index", str(index), "--json", "--mode", "dense")
    assert found.returncode == 0, found.stderr
    assert "40 hours" in json.loads(found.stdout)["results"][0]["text"]
    assert sum(len(r["input"]) for r in server.requests) > embedded  # the question went there

    again = run_cli("ingest", str(notes), "--index", str(index), "--embed-backend", "onnx")
    assert_one_line_error(again, "already has its embedder")
