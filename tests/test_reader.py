import pytest
from tests.helpers import POTION_PATH

from ragtune import WebReader
from ragtune.errors import FetchError, UnsupportedContentError


def test_load_data_returns_markdown_documents_with_metadata(shop_url: str) -> None:
    [document] = WebReader().load_data(urls=[shop_url + POTION_PATH])
    assert document.text.startswith("# Dark Energy Potion")
    assert document.metadata["url"] == shop_url + POTION_PATH
    assert document.metadata["title"] == "Dark Energy Potion"
    assert document.metadata["content_type"] == "text/html"
    assert len(document.metadata["content_hash"]) == 64


def test_crawl_reaches_every_product_through_pagination(shop_url: str) -> None:
    documents = WebReader(crawl=True).load_data(urls=[f"{shop_url}/products"])
    urls = {d.metadata["url"] for d in documents}
    products = {u for u in urls if u.startswith(f"{shop_url}/products/") and "/page/" not in u}
    assert len(products) == 30
    assert f"{shop_url}/products/page/5" in urls


def test_crawl_respects_max_pages(shop_url: str) -> None:
    documents = WebReader(crawl=True, max_pages=5).load_data(urls=[f"{shop_url}/products"])
    assert len(documents) == 5


def test_text_documents_are_kept_as_they_are(awkward_url: str) -> None:
    [document] = WebReader().load_data(urls=[f"{awkward_url}/notes.txt"])
    assert document.text == "Plain text notes about the lighthouse workshop."


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/missing", "HTTP 404"),
        ("/server-error", "HTTP 500"),
        ("/image.png", "unsupported content type image/png"),
        ("/data.bin", "unsupported content type application/octet-stream"),
        ("/empty", "no readable text"),
    ],
)
def test_failures_are_skipped_by_default_and_raised_on_request(
    awkward_url: str, path: str, reason: str
) -> None:
    reader = WebReader()
    documents = reader.load_data(urls=[awkward_url + path, f"{awkward_url}/page"])
    assert [d.metadata["url"] for d in documents] == [f"{awkward_url}/page"]
    assert len(reader.failures) == 1 and reason in str(reader.failures[0])
    with pytest.raises(Exception, match=reason):
        WebReader(ignore_scrape_failures=False).load_data(urls=[awkward_url + path])


def test_unreachable_host_is_a_fetch_error(closed_port_url: str) -> None:
    with pytest.raises(FetchError, match="cannot connect"):
        WebReader(ignore_scrape_failures=False).load_data(urls=[closed_port_url])


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/file", "not an http(s) URL"),
        ("/relative/path", "not an http(s) URL"),
        ("http://", "URL has no host"),
        ("http://[::1", "invalid URL"),
        ("", "not an http(s) URL"),
    ],
)
def test_malformed_urls_are_rejected(url: str, reason: str) -> None:
    with pytest.raises(FetchError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        WebReader(ignore_scrape_failures=False).load_data(urls=[url])


def test_unsupported_content_error_is_a_fetch_error() -> None:
    assert issubclass(UnsupportedContentError, FetchError)


@pytest.mark.parametrize(
    ("path", "reason"), [("/huge", "exceeds the"), ("/declared-huge", "over the")]
)
def test_oversized_bodies_are_refused(awkward_url: str, path: str, reason: str) -> None:
    with pytest.raises(FetchError, match=reason):
        WebReader(ignore_scrape_failures=False).load_data(urls=[awkward_url + path])
