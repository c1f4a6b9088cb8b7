"""The transformers backend (``hf:DIR[#adapter=ADAPTER_DIR]``) on a tiny random Llama.

The model is built here from a config (two layers, 64 wide) with random weights, so its
answers are gibberish; what is tested is the plumbing: loading, the chat template, token
counts, greedy generation, streaming, a LoRA adapter on top, and one-line errors. The
tokenizer (with its chat template) is the bundled SmolLM2's, read from the GGUF file by
transformers' GGUF loader, which needs the ``gguf`` package.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
from tests.helpers import (
    LIGHTHOUSE_QUESTION,
    assert_one_line_error,
    ingest_lighthouse_docs,
    run_cli,
)
from tests.tiny_models import make_tiny_llama, smollm2_tokenizer

from ragtune import VectorStoreIndex
from ragtune.errors import ModelNotFoundError
from ragtune.llm import LLM, ChatMessage, load_llm
from ragtune.llm.transformers_backend import TransformersLLM

pytest.importorskip("gguf", reason="transformers reads the GGUF tokenizer with gguf")
pytest.importorskip("peft", reason="the adapter test needs peft")

MESSAGES: list[ChatMessage] = [{"role": "user", "content": "Where is the lighthouse?"}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random two-layer Llama with SmolLM2's tokenizer and chat template, saved to disk."""
    where = make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
    assert "<|im_start|>" in (smollm2_tokenizer().chat_template or "")
    return where


@pytest.fixture(scope="module")
def adapter_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter with non-zero weights, so the adapted model answers differently."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(1)
    base = LlamaForCausalLM.from_pretrained(model_dir)
    lora = LoraConfig(
        r=4,
        lora_alpha=64,
        target_modules=["q_proj", "v_proj", "o_proj"],
        init_lora_weights=False,  # random B as well as A: a LoRA that changes the output
        task_type="CAUSAL_LM",
    )
    where = tmp_path_factory.mktemp("tiny-lora")
    with warnings.catch_warnings():  # peft 0.21 on transformers 5: a deprecation
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        get_peft_model(base, lora).save_pretrained(str(where))
    return where


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ingest_lighthouse_docs(tmp_path_factory.mktemp("hf-index"))


def test_tiny_model_counts_answers_and_streams(model_dir: Path, index_dir: Path) -> None:
    llm = load_llm(f"hf:{model_dir}")
    assert isinstance(llm, TransformersLLM) and isinstance(llm, LLM)
    assert llm.context_window == 2048 and llm.name == model_dir.name
    text = "The lamp of the Brightwater lighthouse is green."
    assert llm.count_tokens(text) == len(llm._tokenizer.encode(text, add_special_tokens=False))
    answer = llm.chat(MESSAGES, max_tokens=12)
    assert answer and answer == llm.chat(MESSAGES, max_tokens=12)  # greedy: repeatable
    assert load_llm(f"hf:{model_dir}#context=512").context_window == 512

    # The random model's words support nothing: generate with grounding off, so the
    # backend's own token-by-token streaming is what is tested.
    engine = VectorStoreIndex.load(index_dir).as_query_engine(
        llm=llm, answer_tokens=16, answer_mode="generate", grounding="off"
    )
    response = engine.query(LIGHTHOUSE_QUESTION)
    assert response.response
    assert response.metadata["prompt_tokens"] + 16 <= llm.context_window
    tokens, streamed = engine.stream(LIGHTHOUSE_QUESTION)
    pieces = list(tokens)
    assert len(pieces) > 1
    assert streamed.response == "".join(pieces).strip()


def test_adapter_loads_and_changes_the_answer(
    model_dir: Path, adapter_dir: Path, index_dir: Path
) -> None:
    from peft import PeftModel

    base = load_llm(f"hf:{model_dir}")
    adapted = load_llm(f"hf:{model_dir}#adapter={adapter_dir}")
    assert isinstance(adapted, TransformersLLM)
    assert adapted.name == f"{model_dir.name}+{adapter_dir.name}"
    adapted.load()
    assert isinstance(adapted._model, PeftModel)
    answer = adapted.chat(MESSAGES, max_tokens=12)
    assert answer and answer != base.chat(MESSAGES, max_tokens=12)
    assert "".join(adapted.stream_chat(MESSAGES, max_tokens=12)).strip() == answer
    engine = VectorStoreIndex.load(index_dir).as_query_engine(llm=adapted, answer_tokens=16)
    assert engine.query(LIGHTHOUSE_QUESTION).metadata["model"] == adapted.name


def test_cli_ask_streams_through_the_tiny_model(model_dir: Path, index_dir: Path) -> None:
    result = run_cli(
        "ask", LIGHTHOUSE_QUESTION, "--index", str(index_dir), "--llm", f"hf:{model_dir}"
    )
    assert result.returncode == 0, result.stderr
    answer, _, sources = result.stdout.partition("Sources")
    assert answer.strip()
    assert "lighthouse.md" in sources


def test_bad_model_directories_are_one_line(
    tmp_path: Path, model_dir: Path, index_dir: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    no_weights = tmp_path / "no-weights"
    shutil.copytree(model_dir, no_weights)
    for weights in no_weights.glob("*.safetensors"):
        weights.unlink()
    no_template = tmp_path / "no-template"
    shutil.copytree(model_dir, no_template)
    (no_template / "chat_template.jinja").unlink()
    config = json.loads((no_template / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(config))
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    shutil.copy(model_dir / "config.json", no_tokenizer)
    cases = [
        ("hf:/nonexistent", ["model directory /nonexistent does not exist"]),
        (f"hf:{empty}", ["has no config.json"]),
    ]
    for spec, fragments in cases:
        result = run_cli("ask", LIGHTHOUSE_QUESTION, "--index", str(index_dir), "--llm", spec)
        assert_one_line_error(result, *fragments)
    python_cases = [
        (f"hf:{no_weights}", "cannot load the weights"),
        (f"hf:{model_dir}#adapter={empty}", "no adapter_config.json"),
        (f"hf:{no_template}", "has no chat template"),
        (f"hf:{no_tokenizer}", "no usable tokenizer"),
        (f"hf:{model_dir}#adapter={tmp_path / 'gone'}", "adapter directory .* does not exist"),
        (f"hf:{model_dir}#lora=x", "malformed option"),
        (f"hf:{model_dir}#context=big", "malformed option"),
    ]
    for spec, pattern in python_cases:
        with pytest.raises(ModelNotFoundError, match=pattern) as caught:
            load_llm(spec).load()  # type: ignore[attr-defined]
        assert "\n" not in str(caught.value)
