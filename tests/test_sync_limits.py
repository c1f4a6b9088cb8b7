"""ragtune sync keeps a crawl's recorded limits: a site with more pages than
``--max-pages`` never grows the index past it, however often it is synced."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_cli
from tests.webserver import Site, serve

from ragtune import VectorStoreIndex
from ragtune.ingest import IngestSettings, ingest
from ragtune.sync import sync

PAGES = 8
LIMIT = 5


def big_site(missing: str = "") -> Site:
    """An index page linking to PAGES chapters, each linking to the next: more pages
    than LIMIT, all in the seed's folder. The ``missing`` chapter is neither served nor
    linked to."""
    site = Site()
    chapters = [f"/manual/ch{n}.html" for n in range(PAGES)]
    links = "".join(f'<p><a href="{c}">{c}</a></p>' for c in chapters if c != missing)
    site.page("/manual/index.html", f"<html><body><h1>Manual</h1>{links}</body></html>")
    for n, chapter in enumerate(chapters):
        following = chapters[(n + 1) % PAGES]
        link = f'<p><a href="{following}">next</a></p>' if following != missing else ""
        if chapter != missing:
            site.page(
                chapter,
                f"<html><head><title>Chapter {n}</title></head><body><article>"
                f"<h1>Chapter {n}</h1><p>Chapter {n} explains how the lock keeper opens "
                f"sluice number {n}.</p>{link}</article></body></html>",
            )
    return site


def documents(index_dir: Path) -> int:
    return int(VectorStoreIndex.load(index_dir).stats()["documents"])


def test_syncs_with_nothing_changed_keep_the_page_limit(tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    with serve(big_site()) as site:
        settings = IngestSettings(crawl=True, max_pages=LIMIT, use_sitemaps=False)
        ingest([f"{site.base}/manual/index.html"], index_dir, settings)
        assert documents(index_dir) == LIMIT
        for _ in range(3):
            result = sync(index_dir)
            assert result.added == 0 and result.changed == 0 and result.failed == 0
            assert result.unchanged == LIMIT
            assert result.documents == LIMIT
            # The chapters beyond the limit are reported, not fetched and not added.
            assert result.unvisited["max_pages"]["count"] == PAGES + 1 - LIMIT
        assert documents(index_dir) == LIMIT


def test_sync_fills_what_the_limit_leaves_and_no_more(tmp_path: Path) -> None:
    # A page removed from the site leaves room for exactly one new one, taken by the
    # next sync: the room is what the index held when the sync began.
    index_dir = tmp_path / "idx"
    site = big_site()
    with serve(site):
        settings = IngestSettings(crawl=True, max_pages=LIMIT, use_sitemaps=False)
        ingest([f"{site.base}/manual/index.html"], index_dir, settings)
        indexed = set(VectorStoreIndex.load(index_dir).store.document_metadata())
        gone = next(url for url in sorted(indexed) if "/ch" in url)
        site.routes = big_site(missing=gone.removeprefix(site.base)).routes
        result = sync(index_dir)
        assert (result.removed, result.added, result.documents) == (1, 0, LIMIT - 1)
        refilled = sync(index_dir)
        assert (refilled.removed, refilled.added, refilled.documents) == (0, 1, LIMIT)
        again = sync(index_dir)
        assert (again.removed, again.added, again.documents) == (0, 0, LIMIT)


def test_cli_sync_reports_the_pages_beyond_the_limit(tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    with serve(big_site()) as site:
        seed = f"{site.base}/manual/index.html"
        first = run_cli(
            "ingest", seed, "--crawl", "--max-pages", str(LIMIT), "--no-sitemaps",
            "--index", str(index_dir),
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        synced = run_cli("sync", "--index", str(index_dir))
        as_json = run_cli("sync", "--index", str(index_dir), "--json")
    assert synced.returncode == 0, synced.stderr
    left = PAGES + 1 - LIMIT
    assert synced.stdout.splitlines() == [
        f"Synced {index_dir}: {LIMIT} unchanged, 0 changed (0 chunks embedded), 0 removed, "
        f"0 added, 0 failed; {LIMIT} documents, {documents_chunks(index_dir)} in the index",
        f"The crawl stopped at its --max-pages: {left} links left unvisited, not added "
        "(--json lists them)",
    ]
    report = json.loads(as_json.stdout)
    assert report["counts"]["added"] == 0 and report["documents"] == LIMIT
    assert report["unvisited"]["max_pages"]["count"] == left


def documents_chunks(index_dir: Path) -> str:
    chunks = int(VectorStoreIndex.load(index_dir).stats()["chunks"])
    return f"{chunks} chunk" if chunks == 1 else f"{chunks} chunks"
