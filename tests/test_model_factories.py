"""The LLM and embedder factories: one spec parser, a scheme table each, every entry reachable."""

from pathlib import Path

import pytest

from ragtune.assets import DEFAULT_LLM
from ragtune.errors import EmbedderConfigError, ModelNotFoundError, RagtuneError
from ragtune.index.embedding import (
    EMBEDDER_FACTORIES,
    Embedder,
    OpenAIEmbedder,
    is_remote_spec,
    make_embedder,
)
from ragtune.llm.factory import LLM_FACTORIES, load_llm
from ragtune.llm.llamacpp import LlamaCppLLM
from ragtune.llm.openai_compat import OpenAICompatibleLLM
from ragtune.url_options import parse_spec, split_fragment_options

ENDPOINT = "127.0.0.1:9/v1?model=m"  # nothing listens: building a client must not connect


def _one_line(error: pytest.ExceptionInfo[RagtuneError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_spec_is_split_into_scheme_and_target() -> None:
    spec = parse_spec(" HF:run/model#adapter=a ")
    assert (spec.text, spec.scheme, spec.target) == (
        "HF:run/model#adapter=a",
        "hf",
        "run/model#adapter=a",
    )
    assert parse_spec("openai:http://h/v1").target == "http://h/v1"
    for path in ("models/smol.gguf", "C:\\models\\smol.gguf", "/abs/path", ""):
        assert (parse_spec(path).scheme, parse_spec(path).target) == ("", path)
    assert parse_spec(Path("hf:odd")).scheme == ""  # a Path is a path, whatever it holds


def test_fragment_options_are_name_value_pairs_given_once() -> None:
    assert split_fragment_options("dir#adapter=a&context=8", ("adapter", "context")) == (
        "dir",
        {"adapter": "a", "context": "8"},
    )
    assert split_fragment_options("dir", ("adapter",)) == ("dir", {})
    for bad in ("dir#lora=x", "dir#adapter", "dir#adapter=", "dir#adapter=a&adapter=b"):
        with pytest.raises(ValueError):
            split_fragment_options(bad, ("adapter", "context"))


def test_every_llm_scheme_reaches_its_backend() -> None:
    gguf = DEFAULT_LLM.require()
    specs = {
        "": str(gguf),
        "gguf": f"gguf:{gguf}",
        "llamacpp": f"llamacpp:{gguf}",
        "openai": f"openai:http://{ENDPOINT}",
        "http": f"http://{ENDPOINT}",
        "https": f"https://{ENDPOINT}",
    }
    backends = {"": LlamaCppLLM, "gguf": LlamaCppLLM, "llamacpp": LlamaCppLLM}
    for scheme, spec in specs.items():
        assert isinstance(load_llm(spec), backends.get(scheme, OpenAICompatibleLLM)), spec
    # hf: builds a transformers model (tests/test_transformers_llm.py loads one); here its
    # own check of the directory shows the spec reached it.
    with pytest.raises(ModelNotFoundError, match="model directory /nowhere does not exist"):
        load_llm("hf:/nowhere")
    assert set(LLM_FACTORIES) == set(specs) | {"hf"}


def test_an_unknown_llm_scheme_is_one_line_naming_the_known_ones() -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        load_llm("foo:bar")
    message = _one_line(caught)
    assert message.startswith("unknown LLM spec 'foo:bar'; expected ")
    for scheme in filter(None, LLM_FACTORIES):
        assert f"{scheme}:" in message or (scheme in ("http", "https") and "http(s)" in message)


def test_every_embedder_scheme_reaches_its_backend() -> None:
    assert isinstance(make_embedder(None), Embedder)
    assert isinstance(make_embedder(""), Embedder)
    for scheme in ("openai", "http", "https"):
        spec = f"openai:http://{ENDPOINT}" if scheme == "openai" else f"{scheme}://{ENDPOINT}"
        assert is_remote_spec(spec)
        assert isinstance(make_embedder(spec), OpenAIEmbedder), spec
    with pytest.raises(ModelNotFoundError):  # a path reaches the local backend
        make_embedder("/nonexistent/model/dir")
    assert not is_remote_spec("/nonexistent/model/dir")
    assert set(EMBEDDER_FACTORIES) == {"", "openai", "http", "https"}


def test_an_unknown_embedder_scheme_is_one_line_naming_the_known_ones() -> None:
    with pytest.raises(EmbedderConfigError) as caught:
        make_embedder("foo:bar")
    message = _one_line(caught)
    assert message.startswith("unknown embedder spec 'foo:bar'; expected ")
    assert "openai:" in message and "http(s)" in message and "directory" in message
