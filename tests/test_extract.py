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


# Bylines that trafilatura's AUTHOR_XPATHS find in turn, inside and around what its
# AUTHOR_DISCARD_XPATHS take out first (comments, dates, figures, "print" boxes).
_BYLINE_PAGES = [
    '<div class="post-author">By <time>May 2</time>Jane Doe</div>',
    '<p class="byline">Max Muster <span class="date">2024</span> und Erika Mustermann</p>',
    '<div id="comments"><span class="author">Troll Person</span></div>'
    '<h4 itemprop="author">Ann Author</h4>',
    '<section class="sidebar"><a rel="author">Side Bar</a></section>'
    '<div data-component="Byline">Bob Builder</div>',
    '<span class="AuthorName">x</span><span class="authorName">Carl Coder</span>',
    '<figure><span class="writer">Fig Writer</span></figure><em id="Author_1">Dora Dev</em>',
    "<author>Eve Editor</author>",
    '<p><rel>me</rel>Rel Me Person</p><span class="screenname">@handle</span>',
    '<div class="byline"><a class="print" href="#">Print</a>Fay Fixer</div>',
    '<span class="article-share author">Gus Share</span><span class="posted-by">Hal Post</span>',
    '<div class="byl">' + "x" * 130 + '</div><div class="BBL">Ivy Long</div>',
    '<p class="username">ab</p><p class="journalist-name">Jo Journalist</p>',
    "<p>No byline here at all, only text.</p>",
]


@pytest.mark.parametrize("byline", _BYLINE_PAGES)
def test_metadata_finds_the_author_trafilatura_finds(byline: str) -> None:
    """page_metadata reimplements trafilatura's byline search without its copy of the
    page (ragtune.extract.page_metadata): it must name the same author, date, title."""
    from trafilatura.metadata import extract_author, extract_metadata

    from ragtune.extract.html import _DATE_PARAMS, _parse
    from ragtune.extract.page_metadata import _byline, page_metadata

    html = (
        "<html><head><title>A page | Site</title></head><body><article><h1>Heading</h1>"
        f"{byline}<p>{'Some text of the article. ' * 20}</p></article></body></html>"
    )
    tree, cut_short = _parse(html)
    assert not cut_short
    assert _byline(tree) == extract_author(tree)
    ours = page_metadata(tree, "https://example.org/a", _DATE_PARAMS)
    theirs = extract_metadata(tree, "https://example.org/a", _DATE_PARAMS)
    for key in ("title", "author", "date", "description", "sitename", "url"):
        assert getattr(ours, key) == getattr(theirs, key), key


def test_page_with_control_characters_parses_as_trafilatura_parses_it() -> None:
    """The UTF-8 fast path skips trafilatura's control-character clean-up only where
    the bytes show there is nothing to clean."""
    from lxml import etree
    from trafilatura.utils import load_html

    from ragtune.extract.html import _parse

    for body in ("plain", "bell\x07here", "nonchar\ufffehere", "ümlaut"):
        html = f"<!DOCTYPE html><html><body><p>{body} text</p></body></html>".encode()
        tree, _ = _parse(html)
        assert etree.tostring(tree) == etree.tostring(load_html(html))


def test_threads_extract_as_one_thread_does() -> None:
    """Each thread parses with its own parser (whose error log says whether a page was
    cut short), so the crawler's threads can extract side by side."""
    from concurrent.futures import ThreadPoolExecutor

    deep = "<html><body>" + "<div>" * 300 + "<p>deep text</p>" + "</div>" * 300 + "</body></html>"
    pages = [POTION_HTML.read_bytes(), deep.encode()] * 8
    alone = [extract_html(page).markdown for page in pages]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(lambda page: extract_html(page).markdown, pages)) == alone
