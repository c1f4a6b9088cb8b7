"""The combining extractor: ragtune's Markdown as the base, blocks added or dropped by
the votes of other extractors, every block traceable to the extractors that kept it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers import run_cli

from ragtune import extract_html
from ragtune.errors import ExtractionError
from ragtune.extract import ensemble
from ragtune.extract.ensemble import (
    RAGTUNE,
    RESILIPARSE,
    explain_extraction,
    extract_combined,
    load_selector,
)
from ragtune.extract.extractors import anchor_keys

STORY = " ".join(
    f"Sentence {i} of the report says how the harbour was rebuilt after the winter storm."
    for i in range(6)
)
# trafilatura drops a paragraph inside a "teaser" box as boilerplate; here the box
# holds the article's lead, which resiliparse keeps.
LEAD = "The harbour of Kiel reopens this week after a year of repairs, the city said."


def article(middle: str) -> str:
    return (
        "<html><head><title>Kiel harbour</title></head><body>"
        '<nav><a href="/">Home</a> <a href="/news">News</a> <a href="/about">About us</a></nav>'
        f"<article><h1>Kiel harbour reopens</h1><p>{STORY}</p>{middle}<p>{STORY}</p>"
        "<ul><li>Quay one opens on Monday.</li><li>Quay two opens in May.</li></ul>"
        f"<p>{STORY}</p></article><footer>Imprint and privacy policy</footer></body></html>"
    )


TEASER_PAGE = article(f'<div class="teaser"><p>{LEAD}</p></div>')


def test_a_paragraph_the_base_drops_is_recovered_by_the_vote() -> None:
    assert LEAD not in extract_html(TEASER_PAGE).markdown  # the premise: trafilatura drops it
    page = extract_combined(TEASER_PAGE)
    assert LEAD in page.markdown
    # in its place in the page: after the first paragraph, before the second
    assert page.markdown.index(STORY) < page.markdown.index(LEAD) < page.markdown.rindex(STORY)
    assert "Imprint" not in page.markdown and "About us" not in page.markdown


def test_the_base_markdown_structure_survives() -> None:
    page = extract_combined(TEASER_PAGE)
    assert page.markdown.startswith("# Kiel harbour reopens")
    assert "- Quay one opens on Monday." in page.markdown
    assert page.title == extract_html(TEASER_PAGE).title  # the base's title and metadata
    assert page.metadata["extractor"] == "ensemble-fast"


def test_explain_names_the_extractors_behind_every_block() -> None:
    blocks = explain_extraction(TEASER_PAGE)
    page = extract_combined(TEASER_PAGE)
    shown = [line for block in blocks for line in block.text.splitlines() if line.strip()]
    assert shown == [line for line in page.markdown.splitlines() if line.strip()]
    lead = next(block for block in blocks if LEAD in block.text)
    assert RAGTUNE not in lead.sources and RESILIPARSE in lead.sources
    heading = next(block for block in blocks if block.text.startswith("# "))
    assert heading.sources[0] == RAGTUNE


@pytest.mark.parametrize("declaration", ["", '<?xml version="1.0" encoding="utf-8"?>\n'])
def test_link_texts_are_read_on_xhtml_pages_too(declaration: str) -> None:
    # lxml refuses a str that opens with an XML declaration: the link-density
    # feature must not silently read 0 on such pages.
    keys = anchor_keys(declaration + article(""))
    assert {"home", "news", "about us"} <= keys


def test_a_code_block_is_one_block_and_is_never_cut() -> None:
    code = "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))"
    html = article(f"<pre><code>{code}</code></pre>")
    base = extract_html(html).markdown
    blocks = explain_extraction(html)
    if "```" in base:
        fenced = [block for block in blocks if block.text.lstrip().startswith("```")]
        assert len(fenced) == 1 and "return a + b" in fenced[0].text
    assert "return a + b" in extract_combined(html).markdown


@pytest.mark.parametrize("mode", ["fast", "best"])
def test_the_same_page_gives_the_same_output(mode: ensemble.Mode) -> None:
    first = extract_combined(TEASER_PAGE, extractor=mode)
    again = extract_combined(TEASER_PAGE.encode("utf-8"), extractor=mode)
    assert first.markdown == again.markdown
    assert explain_extraction(TEASER_PAGE, extractor=mode) == explain_extraction(
        TEASER_PAGE, extractor=mode
    )


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="fast, best"):
        extract_combined(TEASER_PAGE, extractor="slow")  # type: ignore[arg-type]


def test_the_selector_is_plain_json_numbers() -> None:
    raw = json.loads(ensemble.SELECTOR_PATH.read_text(encoding="utf-8"))
    for mode in ensemble.MODES:
        for kind in ("add", "keep"):
            spec = raw["modes"][mode][kind]
            assert len(spec["features"]) == len(spec["weights"]) == len(spec["mean"])
            assert all(isinstance(value, float | int) for value in spec["weights"])
    assert set(load_selector()) == set(ensemble.MODES)


@pytest.mark.parametrize(
    "html",
    ["", "<html></html>", "<html><body>   </body></html>", "<<<>>>"],
)
def test_empty_pages_raise_a_clear_error(html: str) -> None:
    with pytest.raises(ExtractionError, match="no readable text"):
        extract_combined(html)


def test_binary_data_raises_a_clear_error() -> None:
    with pytest.raises(ExtractionError, match="binary"):
        extract_combined(bytes(range(256)) * 64)


def test_a_five_megabyte_page_keeps_its_last_paragraph() -> None:
    sentence = "The quick brown fox jumps over the lazy dog. " * 40
    paragraphs = "".join(f"<p>Paragraph {i}. {sentence}</p>" for i in range(2800))
    html = "<html><body><article><h1>Big</h1>" + paragraphs + "</article></body></html>"
    assert len(html) > 5_000_000
    page = extract_combined(html)  # pytest-timeout stops a run that never ends
    assert "Paragraph 2799." in page.markdown


def test_a_deeply_nested_page_yields_its_text() -> None:
    html = "<html><body>" + "<div>" * 5000 + "<p>Deep inside the page.</p>" + "</div>" * 5000
    page = extract_combined(html + "</body></html>")
    assert "Deep inside the page." in page.markdown
    assert explain_extraction(html)[0].text


def test_the_extract_command_explains_and_marks_what_the_vote_added(tmp_path: Path) -> None:
    page = tmp_path / "story.html"
    page.write_text(TEASER_PAGE, encoding="utf-8")
    result = run_cli("extract", str(page), "--explain")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    (lead,) = [line for line in lines if LEAD in line]
    assert lead.startswith("+ [") and "ragtune" not in lead.split("]")[0]
    assert any(line.startswith("  [ragtune") for line in lines)
    best = run_cli("extract", str(page), "--extractor", "best")
    assert best.returncode == 0 and best.stdout.startswith("# Kiel harbour reopens")
    wrong = run_cli("extract", str(page), "--extractor", "fastest")
    assert wrong.returncode == 2 and "fastest" in wrong.stderr


def test_without_the_ensemble_extra_the_choice_is_refused_in_one_line(tmp_path: Path) -> None:
    page = tmp_path / "story.html"
    page.write_text(TEASER_PAGE, encoding="utf-8")
    # As if resiliparse were not installed (the extra is optional).
    code = (
        "import sys; sys.modules['resiliparse'] = None; from ragtune.cli import main; "
        f"sys.argv = ['ragtune', 'extract', {str(page)!r}, '--extractor', 'fast']; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: --extractor fast needs resiliparse: pip install 'ragtune[ensemble]'"
    )
