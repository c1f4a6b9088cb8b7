"""One module turns content into Documents: a fetched page and a file of the same bytes
become the same text, and extract/ knows nothing of web/."""

import ast
from pathlib import Path

import pytest

import ragtune.extract
from ragtune.errors import ExtractionError
from ragtune.extract.documents import Origin, content_documents, main_content
from ragtune.extract.files import file_documents
from ragtune.web.fetch import FetchedPage
from ragtune.web.pages import page_to_documents

HTML = b"""<html><head><title>Kites</title></head><body><main><h1>Griffin Kite</h1>
<p>A kite for strong winds, sewn from ripstop nylon, that flies in any weather.</p>
<p>It costs 29.50 and ships within two days from the workshop by the sea.</p></main></body></html>"""


def _page(body: bytes, content_type: str) -> FetchedPage:
    return FetchedPage(
        url="http://shop.test/kite",
        final_url="http://shop.test/kite/",
        status=200,
        content_type=content_type,
        body=body,
        encoding="utf-8",
        etag='"v1"',
    )


def test_a_page_and_a_file_of_the_same_bytes_read_the_same(tmp_path: Path) -> None:
    for suffix, content_type, body in (
        (".html", "text/html", HTML),
        (".json", "application/json", b'{"kite": "Griffin", "price": 29.5}'),
        (".md", "text/markdown", b"# Griffin Kite\n\nFlies in any weather."),
    ):
        file = tmp_path / f"kite{suffix}"
        file.write_bytes(body)
        (from_file,) = file_documents(file)
        (from_page,) = page_to_documents(_page(body, content_type))
        assert from_file.text == from_page.text
        assert from_file.metadata["content_hash"] == from_page.metadata["content_hash"]
        assert from_page.metadata["content_type"] == content_type
        assert from_page.metadata["url"] == "http://shop.test/kite"
        assert from_page.metadata["etag"] == '"v1"'
        assert from_file.metadata["path"] == str(file.resolve())


def test_titles_come_from_the_content_else_from_the_name() -> None:
    origin = Origin(
        url="http://t/a", base_url="http://t/a", title="a", metadata={"url": "http://t/a"}
    )
    (page,) = content_documents(HTML, "text/html", origin)
    assert page.metadata["title"] == "Griffin Kite"
    (text,) = content_documents(b"plain words", "text/plain", origin, "utf-8")
    assert text.metadata["title"] == "a"
    assert main_content(HTML, "text/html", origin).title == "Griffin Kite"
    with pytest.raises(ExtractionError, match="^the document is empty$"):
        content_documents(b"  \n", "text/plain", origin)


def test_extract_imports_nothing_from_web() -> None:
    package = Path(ragtune.extract.__file__).parent
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(name.startswith("ragtune.web") for name in names), module
