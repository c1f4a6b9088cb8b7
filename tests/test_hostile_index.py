"""Hostile probing of the index and the remote clients (issue #11).

Secrets (passwords, keys, tokens) are never written into an index or printed;
concurrent writers into one index are serialised, so every source lands and no
commit conflict surfaces; every file an index writes follows the umask; and a
remote endpoint's timeout bounds the whole response, even from a server that
drips its headers one line at a time.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import pytest
from tests.helpers import assert_one_line_error, run_cli
from tests.postgres_server import PostgresServer
from tests.webserver import Handler, RawReply, Reply, Request, Site, serve

from ragtune.atomic import write_json_atomic
from ragtune.errors import (
    EmbedderConfigError,
    EmbeddingServiceError,
    EmbeddingTimeoutError,
    InvalidIndexError,
    LLMError,
)
from ragtune.index.embedding import make_embedder
from ragtune.index.embedding.remote import OpenAIEmbedder
from ragtune.index.lock import LOCK_FILE, write_lock
from ragtune.index.manifest import MANIFEST, Manifest
from ragtune.index.stores.locate import store_name
from ragtune.index.vector_index import VectorStoreIndex, check_index_target
from ragtune.ingest import SOURCES_FILE, IngestSettings, ingest
from ragtune.llm.openai_compat import OpenAICompatibleLLM
from ragtune.url_options import redact

SECRET = "hunter2"

# --- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://rag:hunter2@db/kb", "postgresql://rag@db/kb"),
        ("postgresql://rag@db/kb?password=hunter2&table=t", "postgresql://rag@db/kb?table=t"),
        (
            "postgresql://db/kb?sslpassword=hunter2&sslkey=/k.pem",
            "postgresql://db/kb?sslkey=/k.pem",
        ),
        ("http://h/v1?model=m&api_key=hunter2", "http://h/v1?model=m"),
        ("http://h/v1?apikey=hunter2&key=hunter2&x-api-key=hunter2", "http://h/v1"),
        ("http://h/v1?access_token=hunter2&client_secret=hunter2&model=m", "http://h/v1?model=m"),
        ("http://h/v1?X-Amz-Signature=hunter2&monkey=1", "http://h/v1?monkey=1"),
        ("openai:http://u:hunter2@h:8/v1?model=m", "openai:http://u@h:8/v1?model=m"),
        ("host=db password=hunter2 user=rag", "host=db password=*** user=rag"),
        ("failed: Authorization: Bearer hunter2", "failed: Authorization: Bearer ***"),
        ("see http://h/x?token=hunter2 and http://a:hunter2@b/", "see http://h/x and http://a@b/"),
        ("http://h/v1?model=m&api-version=2024", "http://h/v1?model=m&api-version=2024"),
        # A password with an unencoded / ? or # hides from urlsplit: masked whole.
        ("http://user:hun/ter2@bad host/", "http://***@bad host/"),
        ("http://user:hun?ter2@h/", "http://***@h/"),
        ("http://user:hun#ter2@h/x", "http://***@h/x"),
        # An @ after the host is no userinfo.
        ("https://medium.com:443/@user/post?q=a@b", "https://medium.com:443/@user/post?q=a@b"),
        ("http://[::1]:8080/@x", "http://[::1]:8080/@x"),
        # A URL urlsplit cannot read at all: masked up to its last @, never an error.
        ("see http://hunter2@[::1/ now", "see http://***@[::1/ now"),
        ("http://[::1/x?password=hunter2", "http://[::1/x?password=***"),
        # libpq's empty authority, host and port as parameters: the // stays.
        (
            "postgresql:///kb?host=127.0.0.1&port=5&password=hunter2",
            "postgresql:///kb?host=127.0.0.1&port=5",
        ),
        ("postgres://?host=db&password=hunter2", "postgres://?host=db"),
        ("dsn postgresql:///kb?password=hunter2 failed", "dsn postgresql:///kb failed"),
    ],
)
def test_redact_removes_every_kind_of_secret(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_redact_masks_a_known_secret_anywhere() -> None:
    assert redact("the server said: bad key sk-hunter2", "sk-hunter2") == (
        "the server said: bad key ***"
    )


def test_store_name_keeps_no_password_parameter() -> None:
    name = store_name(f"postgresql://rag:{SECRET}@db:5/kb?password={SECRET}&table=t&sslmode=off")
    assert name == "postgresql://rag@db:5/kb?sslmode=off"
    empty_host = store_name(f"postgresql:///kb?host=db&port=5&password={SECRET}&table=t")
    assert empty_host == "postgresql:///kb?host=db&port=5"


def test_postgres_password_parameter_is_never_printed(notes: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    index = tmp_path / "idx"
    store = f"postgresql://rag@127.0.0.1:{port}/kb?password={SECRET}&sslpassword={SECRET}"
    result = run_cli("ingest", str(notes), "--index", str(index), "--store", store)
    assert_one_line_error(result, f"cannot connect to postgresql://rag@127.0.0.1:{port}/kb")
    assert SECRET not in result.stderr + result.stdout
    assert not index.exists()

    unknown = run_cli("ingest", str(notes), "--index", str(index), "--store", f"password={SECRET}")
    assert_one_line_error(unknown, "unknown store")
    assert SECRET not in unknown.stderr


def test_postgres_password_parameter_is_never_stored(
    postgres: PostgresServer, notes: Path, tmp_path: Path
) -> None:
    index = tmp_path / "idx"
    store = postgres.table_url(f"sec_{uuid.uuid4().hex[:8]}") + f"&password={SECRET}"
    result = run_cli("ingest", str(notes), "--index", str(index), "--store", store)
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stderr + result.stdout
    for path in index.rglob("*"):  # the corpus vocabulary is binary (.npy)
        assert SECRET.encode() not in path.read_bytes(), path
    assert json.loads((index / MANIFEST).read_text())["store"] == postgres.url
    found = run_cli("retrieve", "How long does the lamp burn?", "--index", str(index), "--json")
    assert found.returncode == 0, found.stderr
    assert "40 hours" in json.loads(found.stdout)["results"][0]["text"]


def test_postgres_uri_with_an_empty_host_works_and_keeps_no_password(
    postgres: PostgresServer, notes: Path, tmp_path: Path
) -> None:
    # libpq reads postgresql:///db?host=... only with its //; redacting once dropped it.
    index = tmp_path / "idx"
    server = f"postgresql:///postgres?host=127.0.0.1&port={postgres.port}&user={postgres.user}"
    table = f"&table=sec_{uuid.uuid4().hex[:8]}"
    result = run_cli(
        "ingest",
        str(notes),
        "--index",
        str(index),
        "--store",
        server + table + f"&password={SECRET}",
    )
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stderr + result.stdout
    for path in index.rglob("*"):  # the corpus vocabulary is binary (.npy)
        assert SECRET.encode() not in path.read_bytes(), path
    assert json.loads((index / MANIFEST).read_text())["store"] == server
    found = run_cli("retrieve", "How long does the lamp burn?", "--index", str(index), "--json")
    assert found.returncode == 0, found.stderr
    assert "40 hours" in json.loads(found.stdout)["results"][0]["text"]


def test_a_secret_an_older_manifest_kept_is_dropped(tmp_path: Path) -> None:
    written = Manifest(
        embedder_path=f"openai:http://{SECRET}@127.0.0.1:9/v1?model=m&api_key={SECRET}",
        embedder_name="m",
        dimensions=3,
        chunk_size=64,
        chunk_overlap=8,
        store=f"postgresql://rag@db/kb?password={SECRET}",
    )
    write_json_atomic(tmp_path / MANIFEST, asdict(written))
    manifest = Manifest.load(tmp_path)
    assert manifest.store == "postgresql://rag@db/kb"
    assert manifest.embedder_path == "openai:http://127.0.0.1:9/v1?model=m"
    manifest.save(tmp_path)
    assert SECRET not in (tmp_path / MANIFEST).read_text()


@pytest.mark.parametrize(
    "spec",
    [
        f"openai:http://u:{SECRET}@127.0.0.1:9/v1?model=m",
        f"openai:http://127.0.0.1:9/v1?model=m&api_key={SECRET}",
        f"http://127.0.0.1:9/v1?token={SECRET}&model=m",
        f"openai:http://{SECRET}@127.0.0.1:9/v1?model=m",  # a token as the user name
    ],
)
def test_embedding_endpoint_refuses_credentials_in_its_url(spec: str) -> None:
    # The spec is kept in the index and reopened by every later command: the key
    # must come from the environment, never from the URL.
    with pytest.raises(EmbedderConfigError) as caught:
        make_embedder(spec)
    message = str(caught.value)
    assert SECRET not in message and "\n" not in message
    assert "RAGTUNE_EMBED_API_KEY" in message


@pytest.mark.parametrize("userinfo", [f"u:{SECRET}", SECRET])
def test_cli_embedding_endpoint_with_credentials_writes_and_prints_nothing(
    notes: Path, tmp_path: Path, userinfo: str
) -> None:
    index = tmp_path / "idx"
    spec = f"openai:http://{userinfo}@127.0.0.1:9/v1?model=m"
    result = run_cli("ingest", str(notes), "--index", str(index), "--embed-model", spec)
    assert_one_line_error(result, "RAGTUNE_EMBED_API_KEY")
    assert SECRET not in result.stderr + result.stdout
    assert not index.exists()


@pytest.mark.parametrize("host", ["a..b", "a" * 64 + ".com"])
def test_endpoints_on_a_host_name_that_cannot_be_encoded_fail_in_one_line(
    notes: Path, tmp_path: Path, host: str
) -> None:
    # socket's idna encoding raised a UnicodeError no client reported as a failed connection.
    index = tmp_path / "idx"
    spec = f"openai:http://{host}/v1?model=m"
    embedded = run_cli("ingest", str(notes), "--index", str(index), "--embed-model", spec)
    assert_one_line_error(embedded, "embedding endpoint", "invalid host name")
    assert not index.exists()
    asked = run_cli("ask", "hi", "--llm", spec + "&context=512")
    assert_one_line_error(asked, "invalid host name")


def test_embedding_errors_never_show_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGTUNE_EMBED_API_KEY", f"sk-{SECRET}")

    def echo_key(request: Request) -> Reply:
        body = json.dumps({"error": {"message": f"bad key {request.headers['authorization']}"}})
        return _json_reply(401, body)

    with _answer_everything(echo_key) as base:
        embedder = OpenAIEmbedder(f"{base}/v1", "m", dimensions=3, retries=0)
        with pytest.raises(EmbeddingServiceError) as caught:
            embedder.embed(["text"])
    assert "HTTP 401" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_llm_errors_and_repr_never_show_credentials(
    monkeypatch: pytest.MonkeyPatch, closed_port_url: str
) -> None:
    monkeypatch.setenv("RAGTUNE_LLM_API_KEY", f"sk-{SECRET}")
    host = closed_port_url.removeprefix("http://").rstrip("/")
    llm = OpenAICompatibleLLM.from_spec(
        f"openai:http://u:{SECRET}@{host}/v1?model=m&context=512&api_key={SECRET}"
    )
    assert SECRET not in repr(llm)
    with pytest.raises(LLMError) as caught:
        llm.chat([{"role": "user", "content": "hi"}])
    assert "connection refused" in str(caught.value)
    assert SECRET not in str(caught.value)
    with pytest.raises(LLMError) as malformed:
        OpenAICompatibleLLM.from_spec(f"openai:http://h/v1?timeout=soon&api_key={SECRET}")
    assert SECRET not in str(malformed.value)

    def echo_key(request: Request) -> Reply:
        body = json.dumps({"error": f"bad key {request.headers['authorization']}"})
        return _json_reply(401, body)

    with _answer_everything(echo_key) as base:
        served = OpenAICompatibleLLM(f"{base}/v1", "m", context_window=512, retries=0)
        with pytest.raises(LLMError) as echoed:
            served.chat([{"role": "user", "content": "hi"}])
    assert "HTTP 401" in str(echoed.value)
    assert SECRET not in str(echoed.value)


# --- index directories ---------------------------------------------------------------------


def test_an_index_directory_that_cannot_be_made_is_one_line(notes: Path, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    target = afile / "idx"
    with pytest.raises(InvalidIndexError, match="is not a directory"):
        check_index_target(target)  # before anything is read or fetched
    result = run_cli("ingest", str(notes), "--index", str(target))
    assert_one_line_error(result, f"cannot write the index at {target}: {afile} is not a directory")
    assert afile.read_text() == "not a folder"

    # No ancestor says so in advance; creating it fails.
    proc = run_cli("ingest", str(notes), "--index", "/proc/ragtune-idx/idx")
    assert_one_line_error(proc, "cannot write the index at /proc/ragtune-idx/idx")
    assert not Path("/proc/ragtune-idx").exists()


# --- concurrent writers -------------------------------------------------------------------


def _page(name: str, meta: str, fact: str) -> str:
    return (
        f"<html><head><title>{name}</title>{meta}</head><body><article><h1>{name}</h1>"
        f"<p>{fact} This paragraph is long enough for the extractor to keep it whole.</p>"
        "</article></body></html>"
    )


KEYED_PAGES = {
    "kites.html": (
        '<meta name="author" content="Ada Lovelace">',
        "The griffin kite costs 89 dollars.",
    ),
    "lamps.html": ('<meta name="description" content="Lamps">', "The lamp burns 40 hours."),
    "boots.html": ('<meta property="og:site_name" content="Shop">', "The boots weigh 2 kilos."),
    "maps.html": ('<meta name="date" content="2024-05-01">', "The atlas has 300 maps."),
}
PLAIN_PAGES = {
    "owls.md": "# Owls\n\nThe brass owl hoots at midnight sharp.\n",
    "tea.md": "# Tea\n\nThe moon tea steeps for seven minutes.\n",
    "rope.txt": "The elven rope holds 900 kilograms without fraying.",
    "bell.txt": "The silver bell rings in the key of E flat.",
}


def _ingest_together(files: list[Path], index: Path) -> list[subprocess.CompletedProcess[str]]:
    processes = [_start("ingest", str(file), "--index", str(index)) for file in files]
    results = []
    for process, file in zip(processes, files, strict=True):
        stdout, stderr = process.communicate(timeout=300)
        results.append(subprocess.CompletedProcess([str(file)], process.returncode, stdout, stderr))
    return results


def test_concurrent_ingests_all_land(tmp_path: Path) -> None:
    index = tmp_path / "idx"
    keyed = []
    for name, (meta, fact) in KEYED_PAGES.items():
        keyed.append(tmp_path / name)
        keyed[-1].write_text(_page(name, meta, fact))
    plain = []
    for name, text in PLAIN_PAGES.items():
        plain.append(tmp_path / name)
        plain[-1].write_text(text)

    # Four into a new index, then four more into the now existing one.
    for files in (keyed, plain):
        for result in _ingest_together(files, index):
            assert result.returncode == 0, result.stderr
            assert "Traceback" not in result.stderr, result.stderr

    recorded = json.loads((index / SOURCES_FILE).read_text())["sources"]
    assert sorted(entry["source"] for entry in recorded) == sorted(
        str(file.resolve()) for file in keyed + plain
    )
    keys = json.loads((index / MANIFEST).read_text())["metadata_keys"]
    assert {"author", "description", "sitename", "date"} <= set(keys)
    assert not (index / LOCK_FILE).exists()
    loaded = VectorStoreIndex.load(index)
    assert loaded.store.count_documents() == 8
    found = loaded.as_retriever(filters={"author": "Ada Lovelace"}).retrieve("price of the kite")
    assert [node.metadata["url"] for node in found] == [keyed[0].resolve().as_uri()]


def test_a_busy_index_makes_writers_wait_and_never_readers(notes: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    ingest([str(notes / "kites.md")], index, IngestSettings())
    (notes / "kites.md").write_text("# Kites\n\nThe griffin kite now costs 99 dollars.\n")
    with write_lock(index):
        # A reader goes on while the index is locked...
        found = VectorStoreIndex.load(index).as_retriever().retrieve("griffin kite price")
        assert "89 dollars" in found[0].text
        # ... and writers, an ingest and a sync, say why they wait.
        writers = [
            _start("ingest", str(notes / "lamps.md"), "--index", str(index)),
            _start("sync", "--index", str(index)),
        ]
        for writer in writers:
            assert writer.stderr is not None
            waiting = writer.stderr.readline()
            assert "busy" in waiting and "waiting" in waiting, waiting
            assert writer.poll() is None
    for writer in writers:
        rest = writer.communicate(timeout=120)[1]
        assert writer.returncode == 0, rest
    loaded = VectorStoreIndex.load(index)
    assert loaded.store.count_documents() == 2
    assert "99 dollars" in loaded.as_retriever().retrieve("griffin kite price")[0].text


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ragtune", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_write_lock_is_reentrant_and_leaves_no_trace(tmp_path: Path) -> None:
    new = tmp_path / "new"
    with write_lock(new), write_lock(new):
        assert (new / LOCK_FILE).exists()
        # Another ingest starting now sees an index being created, not a foreign directory.
        (new / f".{MANIFEST}.1a2b.tmp").touch()
        check_index_target(new)
        (new / f".{MANIFEST}.1a2b.tmp").unlink()
        (new / "notes.txt").touch()
        with pytest.raises(InvalidIndexError):
            check_index_target(new)
        (new / "notes.txt").unlink()
    assert not new.exists()  # created for the lock, and nothing else was written
    kept = tmp_path / "kept"
    kept.mkdir()
    with write_lock(kept):
        pass
    assert kept.is_dir() and not any(kept.iterdir())


# --- file permissions ---------------------------------------------------------------------


def test_index_files_follow_the_umask(notes: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    result = subprocess.run(
        [sys.executable, "-m", "ragtune", "ingest", str(notes), "--index", str(index)],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: os.umask(0o027),  # noqa: PLW1509
    )
    assert result.returncode == 0, result.stderr
    modes = {
        str(path.relative_to(index)): stat.S_IMODE(path.stat().st_mode)
        for path in [index, *index.rglob("*")]
    }
    wanted = {name: 0o750 if (index / name).is_dir() else 0o640 for name in modes}
    assert modes == wanted
    assert {MANIFEST, SOURCES_FILE, "ingest-report.json"} <= set(modes)


def test_json_writer_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        write_json_atomic(tmp_path / "a.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o664
    assert [path.name for path in tmp_path.iterdir()] == ["a.json"]


# --- a wall-clock deadline for remote endpoints -------------------------------------------

DRIP_S = 0.2
DRIP_FOR_S = 5.0


def _drip_headers(request: Request) -> RawReply:
    """A status line, then one header line every DRIP_S seconds; the body never comes."""

    def lines() -> Iterator[bytes]:
        yield b"HTTP/1.1 200 OK\r\n"
        started = time.monotonic()
        while time.monotonic() - started < DRIP_FOR_S:
            yield f"X-Drip: {time.monotonic():.2f}\r\n".encode()
            time.sleep(DRIP_S)

    return RawReply(lines())


def _drip_events(request: Request) -> RawReply:
    """An event stream that only ever sends keep-alive comments."""

    def events() -> Iterator[bytes]:
        yield b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        started = time.monotonic()
        while time.monotonic() - started < DRIP_FOR_S:
            yield b": still thinking\n\n"
            time.sleep(DRIP_S)

    return RawReply(events())


def test_embedding_timeout_bounds_a_dripping_server() -> None:
    with _answer_everything(_drip_headers) as base:
        embedder = OpenAIEmbedder(f"{base}/v1", "m", dimensions=3, timeout=1.0, retries=0)
        started = time.monotonic()
        with pytest.raises(EmbeddingTimeoutError) as caught:
            embedder.embed(["text"])
        elapsed = time.monotonic() - started
    assert elapsed < 2.5, elapsed
    assert "1 s" in str(caught.value)


@pytest.mark.parametrize("drip", [_drip_headers, _drip_events])
def test_llm_timeout_bounds_a_dripping_server(drip: Handler) -> None:
    with _answer_everything(drip) as base:
        llm = OpenAICompatibleLLM(f"{base}/v1", "m", context_window=512, timeout=1.0, retries=0)
        for call in (llm.chat, lambda m: list(llm.stream_chat(m))):
            started = time.monotonic()
            with pytest.raises(LLMError) as caught:
                call([{"role": "user", "content": "hi"}])
            elapsed = time.monotonic() - started
            assert elapsed < 2.5, elapsed
            assert "1 s" in str(caught.value)


# --- helpers ------------------------------------------------------------------------------


def _json_reply(status: int, body: str) -> Reply:
    return Reply(status, body.encode(), content_type="application/json")


@contextmanager
def _answer_everything(answer: Handler) -> Iterator[str]:
    """A loopback server whose every request, on any path, is answered by one function."""
    site = Site()
    site.routes["/*"] = answer
    with serve(site):
        yield site.base
