"""Token counts for a GGUF model without llama.cpp's HTTP round trip, equal to llama.cpp's own."""

import random
import struct
from pathlib import Path

import httpx
import pytest

from ragtune.assets import DEFAULT_LLM, demo_shop_dir
from ragtune.llm.gguf_tokenizer import gguf_tokenizer, read_gguf_metadata
from ragtune.llm.llamacpp import LlamaCppLLM

TEXTS = [
    "Hello, world!",
    "",
    "  leading blanks, trailing ones  \n\n",
    "Ünïcödé façade naïve café Ölçü ğüşçö İı",
    "日本語のテキストです。中文文本测试，标点符号！",
    "Привет, мир! Ελληνικά κείμενο. Tiếng Việt có dấu",
    "مرحبا بالعالم ٠١٢٣٤٥٦٧٨٩ שלום עולם",
    "हिन्दी पाठ १२३ ภาษาไทย ๑๒๓ 한국어 텍스트",
    "emoji 😀👍🏽🇩🇪 family 👨‍👩‍👧",
    "<|im_start|>user\nhi<|im_end|>\n<|endoftext|><filename>",
    "tabs\tand\r\nCRLF\u00a0nbsp\u2009thin\u200bzero-width\u2008",
    "numbers 1234567890 3.14159 1,000,000 ５６７ ²³",
    "code: def f(x):\n    return x**2  # it's 'quoted' \"and\" `ticked`",
    "URL https://example.com/a?b=c&d=e#f",
    "ﬁ ligature ＦＵＬＬ　ｗｉｄｔｈ \x00\x01 control",
    "a" * 500,
    "The quick brown fox jumps over the lazy dog. " * 20,
]
# Random text from many scripts, with digits, blanks and special tokens among it.
_RANGES = [
    (0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
    (0x660, 0x669), (0x900, 0x97F), (0xE00, 0xE7F), (0x2000, 0x206F), (0x3040, 0x30FF),
    (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF10, 0xFF19), (0x1F300, 0x1F6FF),
]  # fmt: skip
_PIECES = [" ", "  ", "\n", "\t", ".", "'s", "123", "<|im_start|>", "<|endoftext|>"]


def _random_texts(count: int) -> list[str]:
    rng = random.Random(12)
    return [
        "".join(
            chr(rng.randint(*rng.choice(_RANGES))) if rng.random() > 0.15 else rng.choice(_PIECES)
            for _ in range(rng.randint(1, 80))
        )
        for _ in range(count)
    ]


@pytest.fixture(scope="module")
def llama() -> LlamaCppLLM:
    return LlamaCppLLM()


def _llama_cpp_count(llama: LlamaCppLLM, text: str) -> int:
    """The count from llama.cpp's own tokenizer, as its server's /tokenize gives it."""
    response = httpx.post(f"{llama.http_url}/tokenize", json={"content": text}, timeout=30)
    response.raise_for_status()
    return len(response.json()["tokens"])


def test_counts_equal_llama_cpp_in_many_languages(llama: LlamaCppLLM) -> None:
    pages = [page.read_text() for page in sorted(demo_shop_dir().rglob("*.html"))[:10]]
    texts = TEXTS + pages + _random_texts(300)
    counts = [
        (text[:40], llama.count_tokens(text), _llama_cpp_count(llama, text)) for text in texts
    ]
    assert [count for count in counts if count[1] != count[2]] == []
    assert llama._tokenizer is not None  # counted in-process, not by llama.cpp again


def test_the_bundled_model_reads_as_a_smollm_byte_level_bpe() -> None:
    metadata = read_gguf_metadata(DEFAULT_LLM.require(), prefix="tokenizer.ggml.")
    assert (metadata["tokenizer.ggml.model"], metadata["tokenizer.ggml.pre"]) == ("gpt2", "smollm")
    assert len(metadata["tokenizer.ggml.tokens"]) == len(metadata["tokenizer.ggml.token_type"])
    assert "tokenizer.chat_template" not in metadata  # only the prefix asked for


def _gguf(entries: dict[str, str]) -> bytes:
    """A GGUF file of string metadata only (version 3, no tensors)."""

    def string(text: str) -> bytes:
        data = text.encode()
        return struct.pack("<Q", len(data)) + data

    body = b"".join(string(k) + struct.pack("<I", 8) + string(v) for k, v in entries.items())
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(entries)) + body


def test_a_tokenizer_not_reproduced_exactly_is_left_to_llama_cpp(tmp_path: Path) -> None:
    other = tmp_path / "other.gguf"
    other.write_bytes(_gguf({"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "llama-bpe"}))
    assert gguf_tokenizer(other) is None
    sentencepiece = tmp_path / "spm.gguf"
    sentencepiece.write_bytes(_gguf({"tokenizer.ggml.model": "llama"}))
    assert gguf_tokenizer(sentencepiece) is None
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(_gguf({"tokenizer.ggml.model": "gpt2"})[:-3])
    assert gguf_tokenizer(cut) is None
    zeros = tmp_path / "zeros.gguf"
    zeros.write_bytes(b"GGUF" + bytes(64))
    assert gguf_tokenizer(zeros) is None
