"""Tokenizers that ragtune trains, exported to GGUF with a tiny random Llama: llama.cpp
splits text into the same token ids as transformers, and continues a prompt with the same
greedy tokens, for a byte-level BPE, a character vocabulary, and a character vocabulary
over ASCII text (whose only merge is the stand-in llama.cpp needs).

The corpus is the extraction-eval set's annotated snippets: real text in many languages.
llama.cpp runs in-process (xllamacpp), as in tests/test_export.py.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.greedy import (
    hf_greedy,
    llamacpp_post,
    llamacpp_server,
    load_model,
    prompt_ids,
    server_greedy,
)

from ragtune.llm.gguf_tokenizer import gguf_tokenizer, read_gguf_metadata
from ragtune.runtime import configure_torch_threads
from ragtune.train.export.gguf_export import export_gguf
from ragtune.train.pretrain.corpus import Corpus
from ragtune.train.pretrain.tokenizer import TOKENIZER_FILES, train_tokenizer

EXTRACTION_EVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "extraction-eval"
PROMPT = "Die GEMA dreht völlig am Zeiger! 2012 <|im_start|>"
NEW_TOKENS = 10

configure_torch_threads()  # one thread: two cores are shared here (see the guide)

TEXTS = [
    "Hello, world!",
    "",
    "  leading blanks, trailing ones  \n\n",
    "Ünïcödé façade naïve café Ölçü ğüşçö İı",
    "日本語のテキストです。中文文本测试，标点符号！",
    "Привет, мир! Ελληνικά κείμενο. Tiếng Việt có dấu",
    "مرحبا بالعالم ٠١٢٣٤٥٦٧٨٩ שלום עולם",
    "हिन्दी पाठ १२३ ภาษาไทย ๑๒๓ 한국어 텍스트",
    "emoji 😀👍🏽🇩🇪 family 👨\u200d👩\u200d👧 🏳️\u200d🌈",
    "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
    "tabs\tand\r\nCRLF\u00a0nbsp\u2009thin\u200bzero-width\u2008",
    "numbers 1234567890 3.14159 1,000,000 ５６７ ²³ ½",
    "code: def f(x):\n    return x**2  # it's 'quoted' \"and\" `ticked`",
    "URL https://example.com/a?b=c&d=e#f",
    "ﬁ ligature ＦＵＬＬ　ｗｉｄｔｈ \x01 control \u0301 lone mark",
    " " * 300 + "x" + "\n" * 50 + "\t" * 20,
    "a" * 500,
    "\u2581 U+2581 \ufffd U+FFFD",
    "The quick brown fox jumps over the lazy dog. " * 20,
]
_RANGES = [
    (0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
    (0x660, 0x669), (0x900, 0x97F), (0xE00, 0xE7F), (0x2000, 0x206F), (0x3040, 0x30FF),
    (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF10, 0xFF19), (0x1F300, 0x1F6FF),
]  # fmt: skip
_PIECES = [" ", "  ", "\n", "\t", ".", "'s", "123", "<|im_start|>", "<|endoftext|>", "\r\n"]


def _random_texts(count: int) -> list[str]:
    """Random text from many scripts, with digits, blanks and special tokens among it."""
    rng = random.Random(7)
    return [
        "".join(
            chr(rng.randint(*rng.choice(_RANGES))) if rng.random() > 0.15 else rng.choice(_PIECES)
            for _ in range(rng.randint(1, 80))
        )
        for _ in range(count)
    ]


def _snippets() -> list[str]:
    """Each extraction-eval page's annotated snippets, one text per page."""
    if not EXTRACTION_EVAL.is_dir():
        pytest.skip(f"{EXTRACTION_EVAL} is absent (the shared data set)")
    pages = json.loads((EXTRACTION_EVAL / "evaldata.json").read_text(encoding="utf-8"))
    return [
        "\n".join(str(s) for key in ("title", "with", "without") for s in _listed(page.get(key)))
        for page in pages.values()
    ]


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


@dataclass
class Exported:
    model_dir: Path
    gguf: Path
    server: Any  # xllamacpp.Server

    def llama_cpp_ids(self, text: str) -> list[int]:
        """llama.cpp's own tokens for ``text`` (special tokens parsed, none added)."""
        return list(llamacpp_post(self.server, "/tokenize", {"content": text})["tokens"])


def _tiny_llama(tokenizer_dir: Path, where: Path, vocab_size: int) -> Path:
    """A random two-layer Llama with ``vocab_size`` rows, saved beside the tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab_size,
        max_position_embeddings=256,
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=True,
        initializer_range=0.2,  # at 0.02 the logits are flat and greedy decoding repeats
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(where, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy2(tokenizer_dir / name, where / name)
    return where


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "snippets.jsonl"
    lines = [json.dumps({"text": text}) for text in _snippets() if text.strip()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=["bpe", "char", "char-ascii"])
def exported(
    request: pytest.FixtureRequest, corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Exported]:
    kind = request.param
    work = tmp_path_factory.mktemp(kind)
    data = corpus
    if kind == "char-ascii":
        data = work / "ascii.txt"
        data.write_text("To be, or not to be, that is the question: 1601.\n" * 3)
    report = train_tokenizer(
        Corpus(data=data),
        work / "tokenizer",
        4_000 if kind == "bpe" else None,
        char=kind != "bpe",
    )
    model_dir = _tiny_llama(work / "tokenizer", work / "model", report.vocab_size)
    gguf_file = export_gguf(model_dir, work / "model.gguf", "f32")
    server = llamacpp_server(gguf_file)
    try:
        yield Exported(model_dir, gguf_file, server)
    finally:
        del server


def test_llama_cpp_splits_text_as_transformers_does(exported: Exported) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exported.model_dir)
    texts = TEXTS + _snippets() + _random_texts(300)
    differ = [
        text[:40]
        for text in texts
        if exported.llama_cpp_ids(text) != tokenizer(text, add_special_tokens=False).input_ids
    ]
    assert differ == []
    # ragtune's in-process count for GGUF models rebuilds this tokenizer exactly.
    rebuilt = gguf_tokenizer(exported.gguf)
    assert rebuilt is not None
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert rebuilt.encode(text, add_special_tokens=False).ids == ids, text[:40]


def test_llama_cpp_continues_a_prompt_with_transformers_greedy_tokens(exported: Exported) -> None:
    ids = prompt_ids(exported.model_dir, PROMPT)
    expected = hf_greedy(load_model(exported.model_dir), ids, NEW_TOKENS, ignore_eos=True)
    assert server_greedy(exported.server, ids, NEW_TOKENS, ignore_eos=True) == expected


def test_the_gguf_declares_smollm2s_splitting_and_special_tokens(exported: Exported) -> None:
    metadata = read_gguf_metadata(exported.gguf, prefix="tokenizer.")
    assert metadata["tokenizer.ggml.model"] == "gpt2"
    assert metadata["tokenizer.ggml.pre"] == "smollm"
    assert metadata["tokenizer.ggml.eos_token_id"] == 0
    assert metadata["tokenizer.ggml.bos_token_id"] == 0
    assert metadata["tokenizer.ggml.add_bos_token"] is False
    assert metadata["tokenizer.ggml.token_type"][:4] == [3, 3, 3, 1]  # control, then normal
    assert len(metadata["tokenizer.ggml.merges"]) >= 1
    assert "<|im_start|>" in metadata["tokenizer.chat_template"]
