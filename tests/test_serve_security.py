"""``ragtune serve``'s defaults a careful operator would choose: loopback without keys,
hashed keys compared in constant time, per-key rate limits, body limits, CORS off.

No answer is generated here (the routes that need a key are asked for models,
metrics and retrieval), so these run in seconds.
"""

from __future__ import annotations

import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from tests.helpers import assert_one_line_error, run_cli
from tests.serve_server import running_server

from ragtune.errors import RagtuneError
from ragtune.serve.app import create_app
from ragtune.serve.auth import KeyRing, hash_key, new_key
from ragtune.serve.config import IndexSpec, ServeConfig


def raw_status(base: str, request_line: str, *headers: str) -> int:
    """The status a request made of exactly these lines gets (no body sent)."""
    host, port = base.removeprefix("http://").split(":")
    head = "\r\n".join([f"{request_line} HTTP/1.1", f"Host: {host}", *headers, "", ""])
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head.encode())
        first_line = connection.makefile("rb").readline().decode()
    return int(first_line.split()[1])


def config_for(index: Path, **options: object) -> ServeConfig:
    return ServeConfig(indexes=[IndexSpec("shop", index)], **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    return path, new_key(path, "alice"), new_key(path, "bob")


@pytest.fixture(scope="module")
def keyed_server(shop_index_dir: Path, key_file: tuple[Path, str, str]) -> Iterator[str]:
    config = config_for(shop_index_dir, api_key_file=key_file[0], rate_limit_per_minute=5)
    with running_server(config) as base:
        yield base


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org"])
def test_a_non_loopback_bind_without_keys_is_refused(shop_index_dir: Path, host: str) -> None:
    with pytest.raises(RagtuneError, match="api-key-file"):
        create_app(config_for(shop_index_dir, host=host))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "[::1]"])
def test_loopback_needs_no_keys(shop_index_dir: Path, host: str) -> None:
    create_app(config_for(shop_index_dir, host=host))


def test_the_cli_refuses_a_public_bind_without_keys(shop_index_dir: Path) -> None:
    result = run_cli("serve", "--index", str(shop_index_dir), "--host", "0.0.0.0", timeout=120)
    assert_one_line_error(result, "0.0.0.0", "--api-key-file")


def test_serve_key_new_prints_a_key_once_and_stores_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    result = run_cli("serve-key", "new", "--file", str(path), "--name", "ops", timeout=120)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("rtk-") and len(key) > 40
    stored = path.read_text()
    assert key not in stored
    assert stored == f"{hash_key(key)} ops\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KeyRing.load(path).identify(key) == "ops"


def test_a_key_file_of_anything_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("rtk-this-is-a-key-in-clear-which-the-file-must-not-hold\n")
    with pytest.raises(RagtuneError, match="line 1") as error:
        KeyRing.load(path)
    assert "rtk-this" not in str(error.value)
    with pytest.raises(RagtuneError, match="not a key file|line 1"):
        new_key(path)
    (tmp_path / "empty.txt").write_text("# no keys yet\n")
    with pytest.raises(RagtuneError, match="no key"):
        KeyRing.load(tmp_path / "empty.txt")
    with pytest.raises(RagtuneError, match="does not exist"):
        KeyRing.load(tmp_path / "absent.txt")


def test_keys_identify_only_themselves(key_file: tuple[Path, str, str]) -> None:
    path, alice, bob = key_file
    ring = KeyRing.load(path)
    assert ring.identify(alice) == "alice"
    assert ring.identify(bob) == "bob"
    for wrong in (None, "", alice[:-1], alice + "x", alice.upper(), hash_key(alice), "é" * 40):
        assert ring.identify(wrong) is None


def test_missing_and_wrong_keys_get_a_401(
    keyed_server: str, key_file: tuple[Path, str, str]
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789"}, {"x-api-key": "x"}):
        reply = httpx.get(f"{keyed_server}/v1/models", headers=headers)
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"] == "Bearer"
        assert reply.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{keyed_server}/v1", api_key="nope", max_retries=0).models.list()
    assert httpx.get(f"{keyed_server}/metrics").status_code == 401
    # Open: the probe, the API's docs, the web UI's pages.
    assert httpx.get(f"{keyed_server}/health").status_code == 200
    assert httpx.get(f"{keyed_server}/openapi.json").status_code == 200


def test_a_valid_key_opens_the_api_and_each_key_has_its_own_rate_limit(
    keyed_server: str, key_file: tuple[Path, str, str]
) -> None:
    _, alice, bob = key_file
    client = openai.OpenAI(base_url=f"{keyed_server}/v1", api_key=alice, max_retries=0)
    assert [m.id for m in client.models.list().data] == ["shop"]
    assert httpx.get(f"{keyed_server}/v1/models", headers={"x-api-key": alice}).status_code == 200
    statuses = [
        httpx.get(f"{keyed_server}/v1/models", headers={"x-api-key": alice}).status_code
        for _ in range(6)
    ]
    assert 429 in statuses  # 5 a minute: the bucket ran dry
    refused = httpx.get(f"{keyed_server}/v1/models", headers={"x-api-key": alice})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "rate_limit_error"
    with pytest.raises(openai.RateLimitError):
        client.models.list()
    # Bob's bucket is his own.
    assert httpx.get(f"{keyed_server}/v1/models", headers={"x-api-key": bob}).status_code == 200


def test_bodies_over_the_limit_are_refused_while_they_arrive(shop_index_dir: Path) -> None:
    config = config_for(shop_index_dir, max_body_bytes=4096, max_upload_bytes=8192)
    with running_server(config) as base:
        url = f"{base}/v1/retrieve"
        # Declared too long: refused on the header alone, before any of the 2 GB is sent.
        assert raw_status(base, "POST /v1/retrieve", "Content-Length: 2147483648") == 413
        # A Content-Length that is no number is a 400, not a crash.
        assert raw_status(base, "POST /v1/retrieve", "Content-Length: 12x") == 400

        # No length declared (chunked): counted as it comes, cut off at the limit.
        def body() -> Iterator[bytes]:
            yield b'{"query": "'
            for _ in range(64):
                yield b"a" * 1024
            yield b'"}'

        reply = httpx.post(url, content=body(), headers={"content-type": "application/json"})
        assert reply.status_code == 413
        error = reply.json()["error"]
        assert error["code"] == "request_too_large" or "4096" in error["message"]

        # Under the limit: answered.
        ok = httpx.post(url, json={"query": "griffin kite", "top_k": 1})
        assert ok.status_code == 200, ok.text


def test_cors_is_off_unless_an_origin_is_named(shop_index_dir: Path) -> None:
    preflight = {
        "Origin": "https://chat.example.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    with running_server(config_for(shop_index_dir)) as base:
        reply = httpx.options(f"{base}/v1/chat/completions", headers=preflight)
        assert "access-control-allow-origin" not in reply.headers
        plain = httpx.get(f"{base}/health", headers={"Origin": "https://chat.example.org"})
        assert "access-control-allow-origin" not in plain.headers
        assert plain.headers["x-content-type-options"] == "nosniff"
    config = config_for(shop_index_dir, cors_origins=["https://chat.example.org"])
    with running_server(config) as base:
        reply = httpx.options(f"{base}/v1/chat/completions", headers=preflight)
        assert reply.status_code == 200
        assert reply.headers["access-control-allow-origin"] == "https://chat.example.org"
        other = httpx.options(
            f"{base}/v1/chat/completions", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"


def test_uploads_have_their_own_limit(shop_index_dir: Path) -> None:
    config = config_for(shop_index_dir, max_body_bytes=4096, max_upload_bytes=65536)
    with running_server(config) as base:
        url = f"{base}/v1/ingest"
        upload = "Content-Type: multipart/form-data; boundary=x"
        assert raw_status(base, "POST /v1/ingest", upload, "Content-Length: 65537") == 413
        as_json = "Content-Type: application/json"
        assert raw_status(base, "POST /v1/ingest", as_json, "Content-Length: 8192") == 413
        # Between the two limits, an upload is the route's to judge, not the guard's.
        small = httpx.post(url, files={"files": ("notes.md", b"# Notes\n\n" + b"a" * 8000)})
        assert small.status_code != 413, small.text


def test_startup_fails_fast_on_a_missing_index_or_model(
    shop_index_dir: Path, tmp_path: Path
) -> None:
    result = run_cli("serve", "--index", str(tmp_path / "absent"), timeout=120)
    assert_one_line_error(result, "absent", "not a ragtune index")
    missing_model = tmp_path / "missing.gguf"
    result = run_cli(
        "serve", "--index", str(shop_index_dir), "--llm", str(missing_model), timeout=120
    )
    assert_one_line_error(result, "missing.gguf")


def test_llm_options_name_an_index_or_all() -> None:
    from ragtune.cli.serve import _with_llms

    specs = [IndexSpec("a", Path("a")), IndexSpec("b", Path("b"))]
    chosen = _with_llms(specs, ["b=openai:http://h/v1?model=m", "big.gguf"])
    assert [s.llm for s in chosen] == ["big.gguf", "openai:http://h/v1?model=m"]
    assert [s.llm for s in _with_llms(specs, [])] == [None, None]
    with pytest.raises(RagtuneError, match="NAME=SPEC"):
        _with_llms(specs, ["one.gguf", "two.gguf"])
