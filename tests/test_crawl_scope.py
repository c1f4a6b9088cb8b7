"""How far a crawl goes: the seed's folder by default, its host or domain on request,
and an honest report of the links its page and depth limits left unvisited.

A local site shaped like a Debian HTML manual: the manual under /library/, its
neighbours (/genindex.html, /reference/) beside it on the same host.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_cli
from tests.webserver import Reply, Site, serve

from ragtune.ingest import SOURCES_FILE, IngestSettings, read_urls, recorded_sources
from ragtune.web.crawl import UNVISITED_LISTED, CrawlEvent, CrawlReport
from ragtune.web.urls import UrlScope, directory_of


def page(title: str, links: list[str]) -> str:
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (
        f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>"
        f"<p>{title} is described here in a paragraph of plain words.</p>"
        f"<ul>{anchors}</ul></article></body></html>"
    )


def manual_site(chapters: int = 3) -> Site:
    site = Site()
    names = [f"/library/ch{n}.html" for n in range(chapters)]
    outside = ["/genindex.html", "/bugs.html", "/reference/api.html"]
    site.page("/library/index.html", page("Library", [*names, *outside, "/library/deep/a.html"]))
    for name in names:
        site.page(name, page(name, ["/library/index.html"]))
    site.page("/library/deep/a.html", page("Deep", ["/library/deep/b.html"]))
    site.page("/library/deep/b.html", page("Deeper", []))
    for name in outside:
        site.page(name, page(name, []))
    return site


def crawl(seed: str, **settings: object) -> list[CrawlEvent]:
    events: list[CrawlEvent] = []
    options = IngestSettings(crawl=True, use_sitemaps=False, **settings)  # type: ignore[arg-type]
    read_urls([seed], options, events.append)
    return events


def fetched_paths(events: list[CrawlEvent], base: str) -> set[str]:
    return {e.url.removeprefix(base) for e in events if e.status == "fetched"}


def test_a_crawl_stays_in_its_seeds_folder_by_default() -> None:
    with serve(manual_site()) as site:
        events = crawl(f"{site.base}/library/index.html")
        assert fetched_paths(events, site.base) == {
            "/library/index.html",
            "/library/ch0.html",
            "/library/ch1.html",
            "/library/ch2.html",
            "/library/deep/a.html",
            "/library/deep/b.html",
        }
        # Not even asked for: a link out of the folder is out of scope, not skipped.
        for outside in ("/genindex.html", "/bugs.html", "/reference/api.html"):
            assert not site.requests_for(outside)


def test_host_scope_reads_the_whole_site_and_domain_scope_its_subdomains() -> None:
    with serve(manual_site()) as site:
        events = crawl(f"{site.base}/library/index.html", scope="host")
        assert {"/genindex.html", "/bugs.html", "/reference/api.html"} <= fetched_paths(
            events, site.base
        )
    domain = UrlScope(["https://docs.example.co.uk/guide/"], scope="domain")
    assert domain.allows("https://api.example.co.uk/anything")
    assert domain.allows("https://example.co.uk/")
    assert not domain.allows("https://example.com/")
    assert not domain.allows("https://other.co.uk/")
    host = UrlScope(["https://docs.example.com/guide/"], scope="host")
    assert host.allows("https://docs.example.com/elsewhere") and not host.allows(
        "https://api.example.com/"
    )


def test_a_seeds_folder_is_the_path_up_to_its_last_slash() -> None:
    assert directory_of("http://h/library/index.html") == "/library/"
    assert directory_of("http://h/library/") == "/library/"
    assert directory_of("http://h/products") == "/"  # a page at the top: the whole site
    scope = UrlScope(["http://h/library/index.html", "http://h/guide/start.html"])
    assert scope.allows("http://h/guide/deep/x.html") and scope.allows("http://h/library/y")
    assert not scope.allows("http://h/libraryx/z") and not scope.allows("http://h/genindex.html")
    assert not scope.allows("http://other/library/y")


def test_a_redirect_out_of_the_folder_is_not_followed() -> None:
    site = manual_site()
    site.page("/library/index.html", page("Library", ["/library/moved.html"]))
    site.routes["/library/moved.html"] = Reply(301, headers={"Location": "/reference/api.html"})
    with serve(site):
        events = crawl(f"{site.base}/library/index.html")
        moved = next(e for e in events if e.url.endswith("/library/moved.html"))
        assert moved.status == "skipped" and moved.skip_kind == "redirect"
        assert "outside the crawl scope" in moved.reason
        assert not site.requests_for("/reference/api.html")


def test_limits_report_the_links_they_left_unvisited() -> None:
    with serve(manual_site(chapters=5)) as site:
        events = crawl(f"{site.base}/library/index.html", max_pages=3)
        report = CrawlReport(events).to_dict()
        assert report["counts"]["fetched"] == 3
        # index + 5 chapters + deep/a are in scope; 3 were fetched, 4 were left.
        assert report["unvisited"]["max_pages"]["count"] == 4
        left = report["unvisited"]["max_pages"]["urls"]
        assert len(left) == 4 and all(url.startswith(f"{site.base}/library/") for url in left)
        assert all(not site.requests_for(url.removeprefix(site.base)) for url in left)
        # The per-URL list and counts hold the URLs the crawl tried, nothing else.
        assert len(report["urls"]) == 3

        deep = CrawlReport(crawl(f"{site.base}/library/index.html", max_depth=1)).to_dict()
        assert deep["unvisited"] == {
            "max_depth": {"count": 1, "urls": [f"{site.base}/library/deep/b.html"]}
        }
        whole = CrawlReport(crawl(f"{site.base}/library/index.html")).to_dict()
        assert whole["unvisited"] == {}


def test_the_report_lists_a_bounded_number_of_unvisited_links() -> None:
    events = [
        CrawlEvent(f"http://h/p{n}", "skipped", "limit", skip_kind="max_pages")
        for n in range(UNVISITED_LISTED + 50)
    ]
    unvisited = CrawlReport(events).unvisited()["max_pages"]
    assert unvisited["count"] == UNVISITED_LISTED + 50
    assert len(unvisited["urls"]) == UNVISITED_LISTED


def test_cli_says_the_page_limit_stopped_the_crawl(tmp_path: Path) -> None:
    index = tmp_path / "idx"
    with serve(manual_site(chapters=5)) as site:
        result = run_cli(
            "ingest",
            f"{site.base}/library/index.html",
            "--crawl",
            "--max-pages",
            "3",
            "--no-sitemaps",
            "--index",
            str(index),
        )
    assert result.returncode == 0, result.stderr
    assert "Indexed 3 documents" in result.stdout and "3 fetched" in result.stdout
    assert (
        "The crawl stopped at --max-pages 3: 4 links in its scope left unvisited "
        "(listed in ingest-report.json)"
    ) in result.stdout
    report = json.loads((index / "ingest-report.json").read_text())
    assert report["unvisited"]["max_pages"]["count"] == 4
    (recorded,) = recorded_sources(index)
    assert recorded.settings.scope == "path"


def test_a_crawl_recorded_before_scopes_keeps_its_host_scope(tmp_path: Path) -> None:
    (tmp_path / SOURCES_FILE).write_text(
        json.dumps(
            {
                "format": "ragtune-sources",
                "version": 1,
                "sources": [
                    {"source": "http://h/docs/a.html", "settings": {"crawl": True}},
                ],
            }
        )
    )
    (recorded,) = recorded_sources(tmp_path)
    assert recorded.settings.scope == "host"
