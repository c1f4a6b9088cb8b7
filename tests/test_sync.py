"""ragtune sync: unchanged pages left alone, changed ones re-embedded, vanished ones removed.

Everything is asserted from sync's counters, the server's request log and the
index's contents, never from timing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.helpers import assert_one_line_error, run_cli
from tests.pdfmaker import make_pdf
from tests.webserver import Reply, Request, Site, serve

from ragtune import VectorStoreIndex, WebReader
from ragtune.errors import RagtuneError
from ragtune.ingest import SOURCES_FILE, IngestSettings, ingest, recorded_sources
from ragtune.sync import SyncResult, sync

LAST_MODIFIED = "Wed, 01 Jan 2025 00:00:00 GMT"
TOPICS = {
    "/a": ("Anchors", "The bower anchor of the brig Tern weighs nine hundredweight."),
    "/b": ("Bells", "The fog bell at Skerry Point rings twice every half minute."),
    "/c": ("Charts", "The Admiralty chart of the Sound was surveyed in 1832."),
    "/d": ("Dories", "A banks dory is built of pine planks on oak frames."),
    "/e": ("Eddies", "The tidal eddy below the bridge turns at slack water."),
}
# Three sections of distinct words, so the new page is several chunks, none seen before.
NEW_BELLS = "\n".join(
    f"<h2>Bell {name}</h2><p>"
    + " ".join(f"{name} bronze bell casting {word} number {n}." for n in range(40))
    + "</p>"
    for name, word in (("Tenor", "foundry"), ("Treble", "clapper"), ("Sanctus", "headstock"))
)


def html(title: str, body: str, links: list[str] | None = None) -> str:
    anchors = "".join(f'<p><a href="{href}">{href}</a></p>' for href in links or [])
    return (
        f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>"
        f"<p>{body}</p>{anchors}</article></body></html>"
    )


@dataclass
class Page:
    body: bytes
    etag: str | None = None
    last_modified: str | None = None
    status: int = 200
    content_type: str = "text/html; charset=utf-8"


@dataclass
class Pages:
    """A site whose pages can be edited, deleted or broken between ingest and sync,
    and that answers conditional GETs as a real server does."""

    site: Site
    pages: dict[str, Page] = field(default_factory=dict)

    def set(self, path: str, page: Page) -> None:
        self.pages[path] = page
        self.site.routes[path] = lambda request, path=path: self._reply(path, request)

    def _reply(self, path: str, request: Request) -> Reply:
        page = self.pages[path]
        if page.status != 200:
            return Reply(page.status, b"<h1>gone</h1>")
        headers = {}
        if page.etag:
            headers["ETag"] = page.etag
        if page.last_modified:
            headers["Last-Modified"] = page.last_modified
        if (page.etag and request.headers.get("if-none-match") == page.etag) or (
            page.last_modified and request.headers.get("if-modified-since") == page.last_modified
        ):
            return Reply(304, b"", headers)
        return Reply(body=page.body, headers=headers, content_type=page.content_type)

    def url(self, path: str) -> str:
        return self.site.base + path


@pytest.fixture()
def pages() -> Iterator[Pages]:
    """An index page linking to /a.../e: ETags on /a and /c, Last-Modified on /d,
    no validators on /b and /e."""
    with serve(Site()) as site:
        pages = Pages(site)
        pages.set("/", Page(html("Harbour notes", "Notes on the harbour.", list(TOPICS)).encode()))
        for path, (title, text) in TOPICS.items():
            etag = f'"{path[1:]}1"' if path in ("/a", "/c") else None
            modified = LAST_MODIFIED if path == "/d" else None
            pages.set(path, Page(html(title, text).encode(), etag, modified))
        yield pages


def change_b_drop_c_and_e(pages: Pages) -> None:
    pages.set("/b", Page(html("Bells", NEW_BELLS).encode()))
    pages.pages["/c"].status = 404
    pages.pages["/e"].status = 410


def chunks_by_url(index_dir: Path) -> dict[str, list[str]]:
    """Every chunk's text in the index, by URL (the test indexes are far under 100 chunks)."""
    nodes = VectorStoreIndex.load(index_dir).as_retriever(100, mode="dense").retrieve("harbour")
    found: dict[str, list[str]] = {}
    for node in nodes:
        found.setdefault(node.metadata["url"], []).append(node.text)
    return found


def actions(result: SyncResult, base: str = "") -> dict[str, str]:
    return {u.url.removeprefix(base): u.action for u in result.urls}


def assert_b_changed_c_and_e_removed(pages: Pages, index_dir: Path, result: SyncResult) -> None:
    assert actions(result, pages.site.base) == {
        "/": "unchanged",
        "/a": "unchanged",
        "/b": "changed",
        "/c": "removed",
        "/d": "unchanged",
        "/e": "removed",
    }
    assert (result.checked, result.unchanged, result.changed, result.removed) == (6, 3, 1, 2)
    assert (result.added, result.failed, result.skipped) == (0, 0, 0)
    chunks = chunks_by_url(index_dir)
    # Exactly the changed page was embedded again: all of its new chunks, nothing else.
    new_b = chunks[pages.url("/b")]
    assert len(new_b) >= 2
    assert result.chunks_embedded == result.chunks_written == len(new_b)
    assert all("Skerry Point" not in text for text in new_b)
    assert pages.url("/c") not in chunks and pages.url("/e") not in chunks
    assert set(chunks) == {pages.url(p) for p in ("/", "/a", "/b", "/d")}
    assert result.documents == 4 and result.chunks == sum(len(t) for t in chunks.values())
    index = VectorStoreIndex.load(index_dir)
    [top] = index.as_retriever(1, mode="keyword").retrieve("Sanctus headstock")
    assert top.metadata["url"] == pages.url("/b")
    texts = [text for page in chunks.values() for text in page]
    for gone in ("Skerry Point", "Admiralty chart", "tidal eddy"):  # old /b, /c, /e
        assert not any(gone in text for text in texts), gone


def conditional_headers(site: Site, path: str, since: int) -> dict[str, str]:
    [request] = [r for r in site.log[since:] if r.path == path]
    return {k: v for k, v in request.headers.items() if k.startswith("if-")}


def test_sync_after_a_crawl_replaces_changed_and_removes_vanished_pages(
    pages: Pages, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    ingest([pages.url("/")], index_dir, IngestSettings(crawl=True, render="never"))
    [recorded] = recorded_sources(index_dir)
    assert recorded.source == pages.url("/") and recorded.settings.crawl
    change_b_drop_c_and_e(pages)

    before = len(pages.site.log)
    result = sync(index_dir)

    assert_b_changed_c_and_e_removed(pages, index_dir, result)
    # Pages with validators were asked for conditionally, and answered 304.
    assert conditional_headers(pages.site, "/a", before) == {"if-none-match": '"a1"'}
    assert conditional_headers(pages.site, "/d", before) == {"if-modified-since": LAST_MODIFIED}
    assert conditional_headers(pages.site, "/b", before) == {}

    # A second sync finds nothing to do and embeds nothing.
    again = sync(index_dir)
    assert (again.unchanged, again.changed, again.removed, again.chunks_embedded) == (4, 0, 0, 0)


def test_every_indexed_page_is_checked_when_the_index_page_is_unchanged(
    pages: Pages, tmp_path: Path
) -> None:
    # The index page answers 304, so no links are read from it: the crawl
    # starts from every indexed page as well, each asked for once.
    pages.pages["/"].etag = '"home1"'
    index_dir = tmp_path / "index"
    ingest([pages.url("/")], index_dir, IngestSettings(crawl=True, render="never"))
    change_b_drop_c_and_e(pages)
    before = len(pages.site.log)
    result = sync(index_dir)
    assert conditional_headers(pages.site, "/", before) == {"if-none-match": '"home1"'}
    assert conditional_headers(pages.site, "/a", before) == {"if-none-match": '"a1"'}
    assert_b_changed_c_and_e_removed(pages, index_dir, result)


def test_sync_of_an_index_built_with_the_python_api(pages: Pages, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    documents = WebReader().load_data([pages.url(p) for p in ["/", *TOPICS]])
    VectorStoreIndex.from_documents(documents, persist_dir=index_dir)
    assert not (index_dir / SOURCES_FILE).exists()
    change_b_drop_c_and_e(pages)
    assert_b_changed_c_and_e_removed(pages, index_dir, sync(index_dir))


def test_new_pages_are_found_through_any_page_that_changed(pages: Pages, tmp_path: Path) -> None:
    pages.pages["/"].etag = '"home1"'
    index_dir = tmp_path / "index"
    ingest([pages.url("/")], index_dir, IngestSettings(crawl=True, render="never"))
    unchanged = {p: "unchanged" for p in ["/", *TOPICS]}

    # The index page is unchanged (304), but /a now links to /g, which links to /h.
    title, text = TOPICS["/a"]
    pages.set("/a", Page(html(title, text, ["/g"]).encode(), '"a2"'))
    pages.set("/g", Page(html("Gaffs", "A gaff rig sets a four-sided sail.", ["/h"]).encode()))
    pages.set("/h", Page(html("Halyards", "The peak halyard hoists the gaff.").encode()))
    result = sync(index_dir)
    assert actions(result, pages.site.base) == {
        **unchanged,
        "/a": "changed",
        "/g": "added",
        "/h": "added",
    }

    # The index page itself changes and links to /f.
    pages.set("/f", Page(html("Fenders", "Rope fenders are woven from old hawsers.").encode()))
    pages.set("/", Page(html("Harbour notes", "Notes.", [*TOPICS, "/f"]).encode(), '"home2"'))
    result = sync(index_dir)
    assert actions(result, pages.site.base) == {
        **unchanged,
        "/": "changed",
        "/f": "added",
        "/g": "unchanged",
        "/h": "unchanged",
    }
    assert {pages.url(p) for p in ("/f", "/g", "/h")} <= set(chunks_by_url(index_dir))


def test_server_errors_keep_pages_and_are_reported_as_failed(pages: Pages, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    ingest([pages.url("/")], index_dir, IngestSettings(crawl=True, render="never"))
    pages.pages["/a"].status = 500
    pages.pages["/c"].status = 404
    result = sync(index_dir, timeout=5)
    assert (result.unchanged, result.changed, result.removed, result.failed) == (4, 0, 1, 1)
    [failed] = [u for u in result.urls if u.action == "failed"]
    assert failed.url == pages.url("/a") and "HTTP 500" in failed.reason
    assert pages.url("/a") in chunks_by_url(index_dir)  # kept
    assert pages.url("/c") not in chunks_by_url(index_dir)


def test_an_unreachable_server_never_empties_the_index(pages: Pages, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    ingest([pages.url("/")], index_dir, IngestSettings(crawl=True, render="never"))
    for page in pages.pages.values():
        page.status = 403  # not 404 or 410: the pages may come back
    with pytest.raises(RagtuneError, match="none of 6 URLs could be checked"):
        sync(index_dir)
    assert len(chunks_by_url(index_dir)) == 6


def test_folder_sync_rereads_edited_files_and_removes_deleted_ones(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    for name, (title, text) in zip("abcd", TOPICS.values(), strict=False):
        (folder / f"{name}.md").write_text(f"# {title}\n\n{text}\n")
    (folder / "history.pdf").write_bytes(make_pdf(["Built in 1841.", "Oil until 1902."]))
    index_dir = tmp_path / "index"
    ingest([str(folder)], index_dir, IngestSettings())
    (folder / "b.md").write_text("# Bells\n\nThe new bell was cast in Whitechapel in 1907.\n")
    (folder / "c.md").unlink()

    result = sync(index_dir)

    base = folder.resolve().as_uri() + "/"
    assert actions(result, base) == {
        "a.md": "unchanged",
        "b.md": "changed",
        "c.md": "removed",
        "d.md": "unchanged",
        "history.pdf": "unchanged",
    }
    assert [u.reason for u in result.urls if u.action == "removed"] == ["no such file"]
    assert result.chunks_embedded == result.chunks_written == 1
    chunks = chunks_by_url(index_dir)
    assert base + "c.md" not in chunks
    assert chunks[base + "b.md"] == ["The new bell was cast in Whitechapel in 1907."]
    assert len(chunks[base + "history.pdf"]) == 2


def test_a_shorter_pdf_leaves_no_stale_pages_and_a_vanished_one_takes_all(
    tmp_path: Path,
) -> None:
    with serve(Site()) as site:
        pages = Pages(site)
        three = make_pdf(["Page one on lamps.", "Page two on wicks.", "Page three on oil."])
        pages.set("/r.pdf", Page(three, content_type="application/pdf"))
        other = make_pdf(["Sails are of flax.", "Sheets are of hemp.", "Spars are of pine."])
        pages.set("/s.pdf", Page(other, '"s1"', content_type="application/pdf"))
        index_dir = tmp_path / "index"
        ingest([pages.url("/r.pdf"), pages.url("/s.pdf")], index_dir, IngestSettings())
        assert [len(c) for c in chunks_by_url(index_dir).values()] == [3, 3]

        # Re-ingesting a shorter PDF drops its lost page.
        pages.pages["/r.pdf"].body = make_pdf(["Page one on lamps.", "Page two, revised."])
        ingest([pages.url("/r.pdf")], index_dir, IngestSettings())
        assert len(chunks_by_url(index_dir)[pages.url("/r.pdf")]) == 2

        # So does a sync; and a PDF that vanished takes all its pages with it.
        pages.pages["/r.pdf"].body = make_pdf(["Page one on lamps."])
        pages.pages["/s.pdf"].status = 404
        result = sync(index_dir)
        assert actions(result, site.base) == {"/r.pdf": "changed", "/s.pdf": "removed"}
        assert result.chunks_embedded == 0  # page one's text was embedded before
        assert chunks_by_url(index_dir) == {pages.url("/r.pdf"): ["Page one on lamps."]}


def test_sources_are_recorded_once_with_the_newest_settings(pages: Pages, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    ingest([pages.url("/a")], index_dir, IngestSettings(render="never"))
    newest = IngestSettings(timeout=7, render_allow=["https://cdn.example.com"])
    ingest([pages.url("/b"), pages.url("/a")], index_dir, newest)
    recorded = {r.source: r.settings for r in recorded_sources(index_dir)}
    assert recorded == {pages.url("/a"): newest, pages.url("/b"): newest}
    # A source that failed under --skip-failures is not recorded.
    ingest(
        [pages.url("/c"), pages.url("/missing")],
        index_dir,
        IngestSettings(skip_failures=True),
    )
    assert pages.url("/missing") not in {r.source for r in recorded_sources(index_dir)}
    (index_dir / SOURCES_FILE).write_text("{broken")
    with pytest.raises(RagtuneError, match="sources.json is damaged"):
        sync(index_dir)


def test_cli_sync_prints_what_changed_and_json(pages: Pages, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    ingest([pages.url("/")], index_dir, IngestSettings(crawl=True, render="never"))
    change_b_drop_c_and_e(pages)

    dry = run_cli("sync", "--index", str(index_dir), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["dry_run"] is True
    assert report["counts"] == {
        "checked": 6,
        "unchanged": 3,
        "changed": 1,
        "added": 0,
        "removed": 2,
        "failed": 0,
        "skipped": 0,
    }
    assert report["chunks_embedded"] == 0 and report["documents"] == 6  # nothing written

    synced = run_cli("sync", "--index", str(index_dir))
    assert synced.returncode == 0, synced.stderr
    embedded = len(chunks_by_url(index_dir)[pages.url("/b")])
    assert synced.stdout.splitlines() == [
        f"changed  {pages.url('/b')}",
        f"removed  {pages.url('/c')}: HTTP 404 Not Found",
        f"removed  {pages.url('/e')}: HTTP 410 Gone",
        f"Synced {index_dir}: 3 unchanged, 1 changed ({embedded} chunks embedded), 2 removed, "
        f"0 added, 0 failed; 4 documents, {report['chunks'] - 2 - 1 + embedded} chunks in the index",
    ]


def test_cli_sync_errors(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("sync", "--index", str(tmp_path / "none")), "no index at")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.docx").write_bytes(b"precious")
    assert_one_line_error(run_cli("sync", "--index", str(foreign)), "not a ragtune index")
    assert (foreign / "thesis.docx").read_bytes() == b"precious"
