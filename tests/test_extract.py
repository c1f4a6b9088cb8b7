from pathlib import Path

import pytest
from tests.helpers import assert_one_line_error, run_cli

from ragtune import extract_html
from ragtune.assets import demo_shop_dir
from ragtune.errors import ExtractionError

POTION_HTML = demo_shop_dir() / "products" / "dark-energy-potion.html"


def test_product_page_keeps_main_content_and_drops_boilerplate() -> None:
    page = extract_html(
        POTION_HTML.read_bytes(), url="http://shop.test/products/dark-energy-potion"
    )
    assert page.title == "Dark Energy Potion"
    assert page.markdown.startswith("# Dark Energy Potion")
    assert "## Description" in page.markdown
    assert "| Flavor | Bold cherry cola |" in page.markdown  # the table survives as a table
    assert "bold cherry cola" in page.text
    for boilerplate in ("Free shipping on orders", "All rights reserved", "Cart (0)"):
        assert boilerplate not in page.markdown


def test_text_format_has_no_markdown_syntax() -> None:
    page = extract_html(POTION_HTML.read_text(encoding="utf-8"))
    assert "# " not in page.text and "|---" not in page.text
    assert "Dark Energy Potion" in page.text


def test_tiny_page_still_yields_its_text() -> None:
    page = extract_html("<html><body><p>Just one line.</p></body></html>")
    assert page.text == "Just one line."


@pytest.mark.parametrize(
    "html",
    ["", "<html></html>", "<html><body>   </body></html>", "<<<>>>", "\x00\x01\x02binary"],
)
def test_empty_or_garbage_html_raises_a_clear_error(html: str) -> None:
    with pytest.raises(ExtractionError, match="no readable text"):
        extract_html(html)


def test_huge_html_is_extracted() -> None:
    sentence = "The quick brown fox jumps over the lazy dog. " * 40
    paragraphs = "".join(f"<p>Paragraph {i}. {sentence}</p>" for i in range(2000))
    html = "<html><body><article><h1>Big</h1>" + paragraphs + "</article></body></html>"
    assert len(html) > 3_000_000
    page = extract_html(html)
    assert "Paragraph 1999." in page.text


def test_cli_extract_file_markdown_and_text() -> None:
    markdown = run_cli("extract", str(POTION_HTML))
    assert markdown.returncode == 0, markdown.stderr
    assert "# Dark Energy Potion" in markdown.stdout
    text = run_cli("extract", str(POTION_HTML), "--format", "text")
    assert text.returncode == 0
    assert "# Dark" not in text.stdout and "Dark Energy Potion" in text.stdout


def test_cli_extract_url(awkward_url: str) -> None:
    result = run_cli("extract", f"{awkward_url}/page")
    assert result.returncode == 0, result.stderr
    assert "27.3 days" in result.stdout


def test_cli_extract_bad_inputs(tmp_path: Path, awkward_url: str) -> None:
    assert_one_line_error(run_cli("extract", str(tmp_path / "missing.html")), "no such file")
    binary = tmp_path / "photo.jpg"
    binary.write_bytes(b"\xff\xd8\xff" + bytes(100))
    assert_one_line_error(run_cli("extract", str(binary)), "unsupported file type .jpg")
    assert_one_line_error(
        run_cli("extract", f"{awkward_url}/image.png"), "unsupported content type image/png"
    )
    assert_one_line_error(
        run_cli("extract", str(POTION_HTML), "--format", "pdf"), "'markdown', 'text'"
    )
