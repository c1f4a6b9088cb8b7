import pytest

from ragtune.index.chunking import ChunkingConfig, MarkdownChunker, split_blocks
from ragtune.index.embedding import Embedder


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def chunker(embedder: Embedder, size: int = 192, overlap: int = 24) -> MarkdownChunker:
    return MarkdownChunker(embedder.count_tokens, ChunkingConfig(size, overlap))


def test_blocks_carry_their_heading_path() -> None:
    blocks = split_blocks(
        "# Shop\n\nIntro.\n\n## Potions\n\nRed one.\n\n### Details\n\nSmall.\n\n## Boots\n\nBig."
    )
    assert [(b.text, b.headings) for b in blocks] == [
        ("Intro.", ("Shop",)),
        ("Red one.", ("Shop", "Potions")),
        ("Small.", ("Shop", "Potions", "Details")),
        ("Big.", ("Shop", "Boots")),
    ]


def test_code_fence_with_blank_lines_stays_one_block() -> None:
    blocks = split_blocks("Text.\n\n```python\ndef f():\n\n    return 1\n```\n\nAfter.")
    assert blocks[1].text == "```python\ndef f():\n\n    return 1\n```"
    assert len(blocks) == 3


def test_no_chunk_exceeds_the_embedder_window(embedder: Embedder) -> None:
    window = embedder.max_tokens - 2
    long_sentence = "word " * 900
    enormous_token = "x" * 5000
    markdown = "\n\n".join(
        ["# Title", "Short intro.", long_sentence, enormous_token]
        + [f"Paragraph {i}. " + "Sentences about potions and prices. " * 12 for i in range(30)]
        + ["| a | b |\n|---|---|\n" + "\n".join(f"| row {i} | value {i} |" for i in range(200))]
    )
    chunks = chunker(embedder, size=window).chunk(markdown, title="A long page")
    assert len(chunks) > 10
    for chunk in chunks:
        assert embedder.count_tokens(chunk.embed_text) <= window


def test_small_table_is_never_cut(embedder: Embedder) -> None:
    table = "| Name | Price |\n|---|---|\n" + "\n".join(f"| item {i} | ${i}.00 |" for i in range(8))
    markdown = "# Prices\n\n" + "Filler sentence about the shop. " * 40 + "\n\n" + table
    chunks = chunker(embedder, size=128, overlap=0).chunk(markdown, title="Prices")
    holding = [c for c in chunks if "| item 0 |" in c.text]
    assert len(holding) == 1 and "| item 7 |" in holding[0].text


def test_overlap_repeats_the_tail_of_the_previous_chunk(embedder: Embedder) -> None:
    sentences = [f"Fact number {i} is about item {i}." for i in range(60)]
    chunks = chunker(embedder, size=64, overlap=16).chunk(" ".join(sentences), title="")
    assert len(chunks) > 3
    for previous, current in zip(chunks, chunks[1:], strict=False):
        last_sentence = previous.text.split(". ")[-1].rstrip(".")
        assert last_sentence in current.text


def test_header_names_page_and_section(embedder: Embedder) -> None:
    chunks = chunker(embedder).chunk("# Potion\n\n## Reviews\n\nLovely taste.", title="Potion")
    assert chunks[0].header == "Potion > Reviews"
    assert chunks[0].embed_text.startswith("Potion > Reviews\n\n")
