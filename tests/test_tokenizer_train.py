"""``ragtune tokenizer train``: byte-level BPE and character vocabularies trained on files.

Lossless is checked on real pages in many languages (the extraction-eval set: each page's
text with its tags stripped, and its annotated snippets) and on hostile strings. The
tokenizers are small (a few hundred KB of text, 2,000 tokens) so the module runs in seconds.
"""

from __future__ import annotations

import html
import json
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import assert_one_line_error, one_line_message, run_cli_in_process

from ragtune.errors import DatasetError, TrainingError
from ragtune.train.pretrain.corpus import Corpus
from ragtune.train.pretrain.tokenizer import (
    BYTE_SYMBOLS,
    DEFAULT_SPECIAL_TOKENS,
    STAND_IN_MERGE,
    TrainedTokenizer,
    build_tokenizer,
    train_tokenizer,
)

EXTRACTION_EVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "extraction-eval"
PAGE_CHARS = 4_000  # of each page's text in the round trip; 3,000 of every tenth in training
VOCAB_SIZE = 2_000

HOSTILE = [
    "",
    "\x00",
    "a\x00b\x00\x00c",
    "\u0301",  # a combining mark with nothing to combine with
    "\u0301\u0302\u0303 e\u0301 \u20dd",
    "مرحبا بالعالم ٠١٢٣ שלום עולם",
    "\u202eevil\u202c \u200f\u200e\u2066isolate\u2069",
    "👨\u200d👩\u200d👧\u200d👦 👩🏽\u200d💻 🏳️\u200d🌈 🇩🇪 ❤️",
    "line one\r\nline two\r\n\r\n",
    "\r",
    " " * 10_000,
    "\t \t\n\n\n   \n\x0b\x0c\x1c",
    "\u2581\u2581 the SentencePiece marker\u2581",
    "\ufffd replacement \ufffd\ufffd",
    "<|endoftext|><|im_start|>user\nhi<|im_end|>\n<|endoftext",
    "１２３ ٣٤٥ ߁߂ 1234567890 3.14159",
    "\ufeffa byte order mark",
    "\U0010ffff\U000e0001\ue000 private use and the last code point",
    "Ġ Ċ Ā Ń byte-level symbols as text",
    "a" * 5_000,
    "日本語のテキスト。中文文本，한국어 텍스트 ภาษาไทย हिन्दी",
]

# Words of random letters: pairs enough to fill a few hundred tokens, without the shared data.
_letters = random.Random(0)
WORDS = " ".join(
    "".join(_letters.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(_letters.randint(2, 9)))
    for _ in range(400)
)

_SCRIPTS = re.compile(r"<(script|style|noscript)\b.*?</\1\s*>|<!--.*?-->", re.S | re.I)
_TAGS = re.compile(r"<[^>]*>")
_BLANK_LINES = re.compile(r"[ \t\r\f\v]*\n\s*")


def page_texts() -> dict[str, str]:
    """Every page's text (tags stripped, the first PAGE_CHARS characters), and its
    annotated snippets joined: real web text, much of it German, in many languages."""
    if not EXTRACTION_EVAL.is_dir():
        pytest.skip(f"{EXTRACTION_EVAL} is absent (the shared data set)")
    pages = json.loads((EXTRACTION_EVAL / "evaldata.json").read_text(encoding="utf-8"))
    texts: dict[str, str] = {}
    for url, page in pages.items():
        path = EXTRACTION_EVAL / "eval" / page["file"]
        if not path.is_file():
            path = EXTRACTION_EVAL / "cache" / page["file"]
        raw = path.read_bytes()
        try:
            markup = raw.decode("utf-8")
        except UnicodeDecodeError:
            markup = raw.decode("cp1252", errors="replace")
        text = html.unescape(_TAGS.sub(" ", _SCRIPTS.sub(" ", markup)))
        snippets = [
            str(item)
            for key, value in page.items()
            if key != "file"
            for item in (value if isinstance(value, list) else [value])
        ]
        texts[url] = _BLANK_LINES.sub("\n", text)[:PAGE_CHARS] + "\n" + "\n".join(snippets)
    return texts


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return page_texts()


@pytest.fixture(scope="module")
def corpus_file(pages: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every tenth page's first 3,000 characters as JSONL records, about 300 KB."""
    path = tmp_path_factory.mktemp("corpus") / "pages.jsonl"
    lines = [json.dumps({"text": text[:3_000]}) for text in list(pages.values())[::10]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bpe(corpus_file: Path) -> TrainedTokenizer:
    return build_tokenizer(Corpus(data=corpus_file), VOCAB_SIZE)


@pytest.fixture(scope="module")
def char(corpus_file: Path) -> TrainedTokenizer:
    return build_tokenizer(Corpus(data=corpus_file), char=True)


@pytest.fixture(params=["bpe", "char"])
def trained(request: pytest.FixtureRequest) -> TrainedTokenizer:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def _round_trip_failures(trained: TrainedTokenizer, texts: list[str]) -> list[str]:
    tokenizer = trained.tokenizer
    encoded = tokenizer.encode_batch(texts, add_special_tokens=False)
    decoded = tokenizer.decode_batch([e.ids for e in encoded], skip_special_tokens=False)
    return [text[:60] for text, back in zip(texts, decoded, strict=True) if back != text]


def _spec(trained: TrainedTokenizer) -> dict[str, Any]:
    return json.loads(trained.tokenizer.to_str())  # type: ignore[no-any-return]


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- lossless


def test_every_extraction_eval_page_round_trips(
    trained: TrainedTokenizer, pages: dict[str, str]
) -> None:
    assert len(pages) == 990
    assert _round_trip_failures(trained, list(pages.values())) == []


def test_hostile_strings_round_trip(trained: TrainedTokenizer) -> None:
    assert _round_trip_failures(trained, HOSTILE) == []


# ----------------------------------------------------------------------------- what is built


def test_bpe_splits_text_as_smollm2_does_and_fills_the_vocabulary(bpe: TrainedTokenizer) -> None:
    spec = _spec(bpe)
    assert spec["normalizer"] is None
    assert spec["pre_tokenizer"] == {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {
                "type": "ByteLevel",
                "add_prefix_space": False,
                "trim_offsets": True,
                "use_regex": True,
            },
        ],
    }
    assert spec["decoder"]["type"] == "ByteLevel"
    assert spec["model"]["type"] == "BPE"
    assert [(t["id"], t["content"], t["special"]) for t in spec["added_tokens"]] == [
        (0, "<|endoftext|>", True),
        (1, "<|im_start|>", True),
        (2, "<|im_end|>", True),
    ]
    report = bpe.report
    assert report.vocab_size == bpe.tokenizer.get_vocab_size() == VOCAB_SIZE
    assert report.merges == VOCAB_SIZE - 3 - 256
    assert (report.kind, report.documents) == ("bpe", 99)
    assert report.bytes > 200_000
    assert set(BYTE_SYMBOLS) <= set(bpe.tokenizer.get_vocab())
    # Each digit is a token of its own, whatever the corpus.
    assert len(bpe.tokenizer.encode("2024", add_special_tokens=False).ids) == 4


def test_char_makes_each_seen_character_one_token_and_nothing_else(
    char: TrainedTokenizer, corpus_file: Path
) -> None:
    seen = sorted(
        {c for line in corpus_file.read_text().splitlines() for c in json.loads(line)["text"]}
    )
    assert len(seen) > 300  # many scripts
    encoded = char.tokenizer.encode_batch(seen, add_special_tokens=False)
    assert [c for c, e in zip(seen, encoded, strict=True) if len(e.ids) != 1] == []
    # Every merge joins a prefix of a character to its next (continuation) byte.
    continuation = {BYTE_SYMBOLS[byte] for byte in range(0x80, 0xC0)}
    merges = _spec(char)["model"]["merges"]
    assert all(right in continuation for _left, right in merges)
    assert char.report.characters == char.report.characters_seen == len(seen)
    assert char.report.vocab_size == 3 + 256 + len(merges)
    unseen = "\U0001d11e"  # MUSICAL SYMBOL G CLEF
    assert unseen not in seen
    ids = char.tokenizer.encode(unseen, add_special_tokens=False).ids
    assert len(ids) > 1
    assert char.tokenizer.decode(ids) == unseen


def test_char_vocab_size_keeps_the_most_frequent_characters_that_fit(tmp_path: Path) -> None:
    text = "éééé üü 中 ab\n"  # é and ü take one merge each, 中 (three bytes) two
    corpus = Corpus(data=_write(tmp_path / "few.txt", text))
    trained = build_tokenizer(corpus, 3 + 256 + 2, char=True)
    count = {c: len(trained.tokenizer.encode(c, add_special_tokens=False).ids) for c in "éü中a"}
    assert count == {"é": 1, "ü": 1, "中": 3, "a": 1}
    assert (trained.report.characters, trained.report.characters_seen) == (6, 7)
    assert trained.report.vocab_size == 3 + 256 + 2


def test_char_over_ascii_text_has_one_merge_that_never_applies(tmp_path: Path) -> None:
    corpus = Corpus(data=_write(tmp_path / "ascii.txt", "To be, or not to be: 42.\n"))
    trained = build_tokenizer(corpus, char=True)
    assert _spec(trained)["model"]["merges"] == [list(STAND_IN_MERGE)]
    assert trained.report.vocab_size == 3 + 256 + 1
    stand_in = trained.tokenizer.token_to_id("".join(STAND_IN_MERGE))
    for text in HOSTILE:
        assert stand_in not in trained.tokenizer.encode(text, add_special_tokens=False).ids


def test_more_special_tokens_come_after_smollm2s(tmp_path: Path) -> None:
    corpus = Corpus(data=_write(tmp_path / "a.txt", WORDS + " <|tool|> about tools\n"))
    extra = ["<|tool|>", "<|im_end|>", "<|tool|>", "[MASK]"]
    trained = build_tokenizer(corpus, 300, special_tokens=extra)
    assert trained.report.special_tokens == (*DEFAULT_SPECIAL_TOKENS, "<|tool|>", "[MASK]")
    assert trained.tokenizer.token_to_id("<|tool|>") == 3
    ids = trained.tokenizer.encode("use <|tool|> now", add_special_tokens=False).ids
    assert 3 in ids
    refused = [("", "empty"), ("   ", "empty"), ("x", "single character")]
    refused.append(("Ġthe", "spells ' the'"))  # " the" as a byte-level BPE writes it
    for bad, fragment in refused:
        with pytest.raises(TrainingError) as error:
            build_tokenizer(corpus, 300, special_tokens=[bad])
        one_line_message(error, fragment)


def test_training_uses_every_core_whatever_tokenizers_parallelism_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    during: list[str | None] = []

    def on_read(_documents: int) -> None:
        during.append(os.environ.get("TOKENIZERS_PARALLELISM"))

    corpus = Corpus(data=_write(tmp_path / "a.txt", WORDS))
    build_tokenizer(corpus, 300, on_read=on_read)
    assert during == ["true"]
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"  # as it was


# ----------------------------------------------------------------------------- saved


@pytest.fixture(scope="module")
def saved(corpus_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("saved") / "tokenizer"
    train_tokenizer(Corpus(data=corpus_file), output, VOCAB_SIZE)
    return output


def test_transformers_loads_the_saved_tokenizer(saved: Path, pages: dict[str, str]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(saved)
    assert len(tokenizer) == VOCAB_SIZE
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|endoftext|>",) * 3
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == 0
    assert (
        tokenizer("hello", add_special_tokens=True).input_ids
        == tokenizer("hello", add_special_tokens=False).input_ids
    )  # nothing added: no BOS
    texts = HOSTILE + list(pages.values())[:50]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert tokenizer.decode(ids) == text, text[:60]
    for special in DEFAULT_SPECIAL_TOKENS:
        assert len(tokenizer(special, add_special_tokens=False).input_ids) == 1
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    rendered = tokenizer.apply_chat_template(chat, tokenize=False)
    assert rendered == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
    prompt = tokenizer.apply_chat_template(chat[:1], add_generation_prompt=True, tokenize=False)
    ids = tokenizer(str(prompt), add_special_tokens=False).input_ids
    assert ids[0] == 1 and ids.count(1) == 2 and ids.count(2) == 1  # each special token whole
    assert tokenizer.decode(ids, skip_special_tokens=True) == "user\nHi\nassistant\n"


def test_the_saved_directory_holds_transformers_layout_and_how_it_was_trained(
    saved: Path, corpus_file: Path
) -> None:
    assert sorted(p.name for p in saved.iterdir()) == [
        "ragtune_tokenizer.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert [p.name for p in saved.parent.iterdir()] == ["tokenizer"]  # no temporaries left
    config = json.loads((saved / "tokenizer_config.json").read_text())
    assert config["chat_template"].startswith("{% for message in messages %}")
    assert config["clean_up_tokenization_spaces"] is False
    assert config["additional_special_tokens"] == ["<|im_start|>", "<|im_end|>"]
    info = json.loads((saved / "ragtune_tokenizer.json").read_text())
    assert info["kind"] == "bpe"
    assert info["vocab_size"] == VOCAB_SIZE
    assert info["documents"] == 99
    assert info["corpus"] == str(corpus_file)
    assert info["fingerprint"] == Corpus(data=corpus_file).fingerprint()


# ----------------------------------------------------------------------------- refused


def test_a_vocabulary_the_corpus_cannot_fill_is_refused_and_nothing_written(tmp_path: Path) -> None:
    corpus = Corpus(data=_write(tmp_path / "tiny.txt", "hello world, hello again\n"))
    with pytest.raises(DatasetError) as error:
        train_tokenizer(corpus, tmp_path / "out", 5_000)
    message = one_line_message(error, "fills only", "5,000", "--vocab-size")
    reached = int(re.search(r"--vocab-size (\d+)", message).group(1))  # type: ignore[union-attr]
    assert not (tmp_path / "out").exists()
    # The size it suggests is one the corpus fills.
    assert train_tokenizer(corpus, tmp_path / "out", reached).vocab_size == reached


@pytest.mark.parametrize(
    ("size", "fragment"),
    [(100, "at least 260"), (259, "at least 260"), (2**32, "4,294,967,295")],
)
def test_vocab_sizes_out_of_range_are_refused(size: int, fragment: str, tmp_path: Path) -> None:
    corpus = Corpus(data=_write(tmp_path / "a.txt", "a text\n"))
    for char in (False, True):
        with pytest.raises(TrainingError) as error:
            train_tokenizer(corpus, tmp_path / "out", size, char=char)
        one_line_message(error, f"--vocab-size {size}", fragment)
    assert not (tmp_path / "out").exists()


def test_the_smallest_vocabulary_is_trained(tmp_path: Path) -> None:
    corpus = Corpus(data=_write(tmp_path / "a.txt", "a text\n"))
    assert build_tokenizer(corpus, 260).report.merges == 1
    assert build_tokenizer(corpus, 260, char=True).report.merges == 1


def test_output_is_replaced_only_when_asked(tmp_path: Path) -> None:
    corpus = Corpus(data=_write(tmp_path / "data" / "a.txt", WORDS))
    output = _write(tmp_path / "out" / "old.txt", "keep me").parent
    with pytest.raises(TrainingError) as error:
        train_tokenizer(corpus, output, 300)
    one_line_message(error, "not empty", "--overwrite")
    assert [p.name for p in output.iterdir()] == ["old.txt"]
    train_tokenizer(corpus, output, 300, overwrite=True)
    assert not (output / "old.txt").exists()
    assert (output / "tokenizer.json").is_file()
    for inside in (tmp_path / "data", tmp_path):  # never over the corpus it reads
        with pytest.raises(TrainingError) as error:
            train_tokenizer(corpus, inside, 300, overwrite=True)
        one_line_message(error, "would replace the training data")
    assert (tmp_path / "data" / "a.txt").is_file()


# ----------------------------------------------------------------------------- the CLI


def _cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    return run_cli_in_process(capsys, monkeypatch, "tokenizer", "train", *args)


def test_cli_trains_and_prints_a_summary(
    corpus_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    output = tmp_path / "tok"
    result = _cli(
        capsys, monkeypatch, "-d", str(corpus_file), "-o", str(output), "--vocab-size", "1000"
    )
    assert result.returncode == 0, result.stderr
    assert f"Tokenizer written to {output}" in result.stdout
    assert "byte-level BPE: 1,000 tokens (741 merges, 3 special)" in result.stdout
    assert "corpus: 99 documents, " in result.stdout
    char = _cli(
        capsys,
        monkeypatch,
        "--data",
        str(corpus_file),
        "--output",
        str(tmp_path / "char"),
        "--char",
        "--special-token",
        "<|tool|>",
    )
    assert char.returncode == 0, char.stderr
    assert "character-level: " in char.stdout
    assert "4 special" in char.stdout
    info = json.loads((tmp_path / "char" / "ragtune_tokenizer.json").read_text())
    assert info["kind"] == "char"
    assert info["special_tokens"][-1] == "<|tool|>"


def test_cli_shows_progress_lines_off_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    def slow_texts(self: Corpus) -> Iterator[str]:
        for number in range(6):
            time.sleep(0.05)
            yield f"{WORDS} {number}\n"

    monkeypatch.setattr(Corpus, "texts", slow_texts)
    monkeypatch.setenv("RAGTUNE_PROGRESS_INTERVAL", "0.05")
    data = _write(tmp_path / "a.txt", "unused\n")
    result = _cli(
        capsys, monkeypatch, "-d", str(data), "-o", str(tmp_path / "t"), "--vocab-size", "300"
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^Reading the corpus: \d+ done", result.stderr, re.M), result.stderr
    assert "6 documents" in result.stdout


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"


@pytest.mark.parametrize(
    ("name", "setup", "fragments"),
    [
        ("missing", lambda d: ["-d", str(d / "nowhere.txt")], ["nowhere.txt"]),
        ("empty", lambda d: ["-d", str(_write(d / "empty.txt", ""))], ["empty.txt"]),
        ("blank", lambda d: ["-d", str(_write(d / "blank.txt", " \n\n\t"))], ["blank.txt"]),
        ("png", lambda d: ["-d", str(_write(d / "image.png", PNG))], ["image.png"]),
        ("png as text", lambda d: ["-d", str(_write(d / "image.txt", PNG))], ["image.txt"]),
        ("latin-1", lambda d: ["-d", str(_write(d / "l1.txt", b"caf\xe9 cr\xe8me\n"))], ["l1.txt"]),
        ("no text in dir", lambda d: ["-d", str(_write(d / "dir" / "a.png", PNG).parent)], ["dir"]),
        ("no data", lambda d: [], ["--data"]),
        (
            "unfillable",
            lambda d: ["-d", str(_write(d / "small.txt", "tiny corpus")), "--vocab-size", "9000"],
            ["fills only", "--vocab-size"],
        ),
        (
            "too small",
            lambda d: ["-d", str(_write(d / "a.txt", "text")), "--vocab-size", "255"],
            ["--vocab-size 255", "at least 260"],
        ),
        (
            "char too small",
            lambda d: ["-d", str(_write(d / "a.txt", "text")), "--char", "--vocab-size", "10"],
            ["at least 260"],
        ),
    ],
)
def test_cli_bad_input_is_one_error_line_and_writes_nothing(
    name: str,
    setup: Any,
    fragments: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    output = tmp_path / "out" / "tok"
    result = _cli(capsys, monkeypatch, *setup(tmp_path), "-o", str(output))
    assert result.returncode == 1, (name, result.stderr)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "out").exists()
    assert result.stdout == ""


def test_cli_refuses_an_existing_output_and_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = str(_write(tmp_path / "a.txt", WORDS))
    output = _write(tmp_path / "out" / "x.txt", "keep").parent
    exists = _cli(capsys, monkeypatch, "-d", data, "-o", str(output), "--vocab-size", "300")
    assert exists.returncode == 1
    assert_one_line_error(exists, "not empty", "--overwrite")
    assert [p.name for p in output.iterdir()] == ["x.txt"]
    a_file = _cli(capsys, monkeypatch, "-d", data, "-o", str(output / "x.txt"))
    assert_one_line_error(a_file, "is a file")
    for args in (["-d", data], ["-d", data, "-o", str(tmp_path / "new"), "--vocab-size", "many"]):
        usage = _cli(capsys, monkeypatch, *args)
        assert usage.returncode == 2, usage.stderr
        assert_one_line_error(usage)
    assert not (tmp_path / "new").exists()


def test_cli_trains_on_an_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ragtune import Document, VectorStoreIndex

    docs = [
        Document(
            text=f"Page {i}: the lamp of lighthouse {i} is green. Größe {i}.",
            metadata={"url": f"https://example.org/{i}"},
        )
        for i in range(5)
    ]
    VectorStoreIndex.from_documents(docs, persist_dir=tmp_path / "index")
    result = _cli(
        capsys,
        monkeypatch,
        "--from-index",
        str(tmp_path / "index"),
        "-o",
        str(tmp_path / "t"),
        "--char",
    )
    assert result.returncode == 0, result.stderr
    assert "corpus: 5 documents" in result.stdout
