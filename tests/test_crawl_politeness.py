"""Politeness and robustness rules of the crawler, each asserted against a local server."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator

import pytest
from tests.webserver import Reply, Request, Site, serve

from ragtune import WebReader


def html(title: str, body: str = "", links: list[str] | None = None) -> str:
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links or [])
    text = body or f"{title} is a page about lighthouses and the keepers who tend their lamps."
    return f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1><p>{text}</p>{anchors}</article></body></html>"


@pytest.fixture()
def site() -> Iterator[Site]:
    with serve(Site()) as running:
        yield running


def crawl(site: Site, path: str = "/", **options: object) -> WebReader:
    reader = WebReader(crawl=True, **options)  # type: ignore[arg-type]
    reader.load_data([site.base + path])
    return reader


def statuses(reader: WebReader) -> dict[str, tuple[str, str]]:
    return {e.url.split("/", 3)[-1]: (e.status, e.reason) for e in reader.report.events}


def test_robots_disallowed_path_is_never_requested(site: Site) -> None:
    site.routes["/robots.txt"] = Reply(
        body=b"User-agent: *\nDisallow: /private\n", content_type="text/plain"
    )
    site.page("/", html("Home", links=["/public", "/private/secret"]))
    site.page("/public", html("Public"))
    site.page("/private/secret", html("Secret"))
    reader = crawl(site)
    assert site.requests_for("/private/secret") == []
    assert statuses(reader)["private/secret"] == ("skipped", "disallowed by robots.txt")
    assert statuses(reader)["public"][0] == "fetched"
    # robots.txt is read once per host, with our user agent.
    [robots] = site.requests_for("/robots.txt")
    assert robots.headers["user-agent"].startswith("ragtune/")


def test_pages_refused_by_robots_take_no_room_under_the_page_limit(site: Site) -> None:
    """robots.txt is read in the visit, after the page took its room; a refusal gives
    it back, so the allowed pages behind the refused ones are still fetched."""
    site.routes["/robots.txt"] = Reply(
        body=b"User-agent: *\nDisallow: /private\n", content_type="text/plain"
    )
    private = [f"/private/{n}" for n in range(6)]
    public = [f"/public/{n}" for n in range(3)]
    site.page("/", html("Home", links=private + public))
    for path in private + public:
        site.page(path, html(path))
    reader = crawl(site, max_pages=4, use_sitemaps=False)
    counts = reader.report.counts()
    assert counts["fetched"] == 4  # the home page and the three public ones
    assert counts["skipped"] == 6  # every private one, refused by robots.txt
    assert reader.report.unvisited() == {}
    assert all(site.requests_for(path) == [] for path in private)


def test_robots_rules_for_our_user_agent_win(site: Site) -> None:
    site.routes["/robots.txt"] = Reply(
        body=b"User-agent: ragtune\nDisallow: /\n\nUser-agent: *\nAllow: /\n",
        content_type="text/plain",
    )
    site.page("/", html("Home"))
    reader = WebReader(ignore_scrape_failures=True)
    assert reader.load_data([site.base + "/"]) == []
    assert site.requests_for("/") == []
    assert WebReader(obey_robots=False).load_data([site.base + "/"])  # --ignore-robots


def test_robots_server_error_means_stay_away(site: Site) -> None:
    site.routes["/robots.txt"] = Reply(503, b"down")
    site.page("/", html("Home"))
    reader = WebReader(retries=0)
    reader.load_data([site.base + "/"])
    assert site.requests_for("/") == []


def test_crawl_delay_from_robots_spaces_requests(site: Site) -> None:
    site.routes["/robots.txt"] = Reply(
        body=b"User-agent: *\nCrawl-delay: 0.5\n", content_type="text/plain"
    )
    site.page("/", html("Home", links=["/a", "/b"]))
    site.page("/a", html("A"))
    site.page("/b", html("B"))
    crawl(site, use_sitemaps=False)
    times = sorted(r.at for r in site.log if r.path in ("/", "/a", "/b"))
    assert all(later - earlier >= 0.45 for earlier, later in zip(times, times[1:], strict=False))


def test_503_with_retry_after_is_retried_after_the_wait(site: Site) -> None:
    def flaky(request: Request) -> Reply:
        if len(site.requests_for("/busy")) == 1:
            return Reply(503, b"busy", headers={"Retry-After": "2"})
        return Reply(body=html("Busy", "Back in service after the lamp was trimmed.").encode())

    site.routes["/busy"] = flaky
    [document] = WebReader().load_data([site.base + "/busy"])
    first, second = site.requests_for("/busy")
    assert second.at - first.at >= 2.0
    assert "lamp was trimmed" in document.text


def test_retry_after_over_the_limit_gives_up_at_once(site: Site) -> None:
    site.routes["/later"] = Reply(429, b"slow down", headers={"Retry-After": "3600"})
    reader = WebReader()
    reader.load_data([site.base + "/later"])
    assert len(site.requests_for("/later")) == 1
    assert "Retry-After 3600 s is over the 60 s limit" in statuses(reader)["later"][1]


def test_5xx_is_retried_with_growing_backoff_then_reported(site: Site) -> None:
    site.routes["/broken"] = Reply(500, b"boom")
    reader = WebReader(retries=3)
    reader.load_data([site.base + "/broken"])
    attempts = site.requests_for("/broken")
    assert len(attempts) == 4
    gaps = [b.at - a.at for a, b in zip(attempts, attempts[1:], strict=False)]
    # backoff 0.25 s doubling, plus up to as much again in jitter
    for gap, base in zip(gaps, (0.25, 0.5, 1.0), strict=True):
        assert base * 0.95 <= gap <= base * 2 + 0.3
    assert statuses(reader)["broken"] == (
        "failed",
        "HTTP 500 Internal Server Error (gave up after 4 attempts)",
    )


def test_404_is_not_retried(site: Site) -> None:
    reader = WebReader()
    reader.load_data([site.base + "/nowhere"])
    assert len(site.requests_for("/nowhere")) == 1
    assert statuses(reader)["nowhere"] == ("failed", "HTTP 404 Not Found")


def test_per_host_concurrency_and_global_limit(site: Site) -> None:
    def slow(request: Request) -> Reply:
        time.sleep(0.2)
        return Reply(body=html(request.path).encode())

    for n in range(12):
        site.routes[f"/p{n}"] = slow
    WebReader(per_host_concurrency=2, concurrency=16).load_data(
        [f"{site.base}/p{n}" for n in range(12)]
    )
    assert site.max_in_flight == 2
    site.max_in_flight = 0
    WebReader(per_host_concurrency=8, concurrency=3).load_data(
        [f"{site.base}/p{n}" for n in range(12)]
    )
    assert site.max_in_flight == 3


def test_per_host_delay(site: Site) -> None:
    for n in range(4):
        site.page(f"/d{n}", html(f"D{n}"))
    WebReader(delay=0.3).load_data([f"{site.base}/d{n}" for n in range(4)])
    times = sorted(r.at for r in site.log if r.path.startswith("/d"))
    assert all(b - a >= 0.28 for a, b in zip(times, times[1:], strict=False))


def test_sitemap_only_page_is_found(site: Site) -> None:
    site.page("/", html("Home"))
    site.page("/hidden", html("Hidden", "Only the sitemap knows about the hidden lighthouse."))
    site.routes["/sitemap.xml"] = Reply(
        body=f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{site.base}/hidden</loc></url></urlset>".encode(),
        content_type="application/xml",
    )
    reader = crawl(site)
    assert statuses(reader)["hidden"][0] == "fetched"


def test_robots_sitemap_line_gzip_sitemap_and_sitemap_index(site: Site) -> None:
    site.routes["/robots.txt"] = Reply(
        body=f"User-agent: *\nAllow: /\nSitemap: {site.base}/maps/index.xml\n".encode(),
        content_type="text/plain",
    )
    site.routes["/maps/index.xml"] = Reply(
        body=f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{site.base}/maps/pages.xml.gz</loc></sitemap></sitemapindex>".encode(),
        content_type="application/xml",
    )
    site.routes["/maps/pages.xml.gz"] = Reply(
        body=gzip.compress(
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>{site.base}/deep</loc></url></urlset>'.encode()
        ),
        content_type="application/x-gzip",
    )
    site.page("/", html("Home"))
    site.page("/deep", html("Deep"))
    reader = crawl(site)
    assert statuses(reader)["deep"][0] == "fetched"


def test_depth_pages_scope_and_patterns(site: Site) -> None:
    site.page(
        "/",
        html("Home", links=["/l1", "/blog/post", "/shop.zip", "http://example.invalid/off-site"]),
    )
    site.page("/l1", html("L1", links=["/l2"]))
    site.page("/l2", html("L2", links=["/l3"]))
    site.page("/l3", html("L3"))
    site.page("/blog/post", html("Post"))
    reader = crawl(site, max_depth=2, exclude=["*.zip"], use_sitemaps=False)
    fetched = {url for url, (status, _) in statuses(reader).items() if status == "fetched"}
    assert fetched == {"", "l1", "l2", "blog/post"}
    assert site.requests_for("/shop.zip") == [] and site.requests_for("/l3") == []
    only_blog = crawl(site, include=[f"{site.base}/", "*/blog/*"], use_sitemaps=False)
    assert {u for u, (s, _) in statuses(only_blog).items() if s == "fetched"} == {"", "blog/post"}
    limited = crawl(site, max_pages=2, use_sitemaps=False).report
    assert sum(limited.counts().values()) == 2 and limited.unvisited()["max_pages"]["count"] == 3


def test_url_normalisation_and_canonical_dedup(site: Site) -> None:
    site.page("/", html("Home", links=["/a", "/a#section", "/./a", "/x/../a", "/copy"]))
    site.page("/a", html("A", "The original article about the keeper's logbook.", links=["/print"]))
    site.page(
        "/copy", html("A", "The original article about the keeper's logbook.", links=["/print"])
    )
    site.routes["/print"] = Reply(
        body=(
            f'<html><head><link rel="canonical" href="{site.base}/a"></head><body><h1>A (print)</h1>'
            "<p>A printable version of the article about the keeper's logbook.</p></body></html>"
        ).encode()
    )
    reader = crawl(site, use_sitemaps=False)
    assert len(site.requests_for("/a")) == 1  # four spellings, one request
    result = statuses(reader)
    # /a and /copy are fetched at once; whichever lands second is the duplicate.
    first, second = ("a", "copy") if result["copy"][0] == "skipped" else ("copy", "a")
    assert result[first] == ("fetched", "")
    assert result[second] == ("skipped", f"same content as {site.base}/{first}")
    assert result["print"] == ("skipped", f"duplicate of its canonical URL {site.base}/a")
    assert reader.report.skipped_by_kind() == {"duplicate": 2}


def test_conditional_refetch_skips_304(site: Site, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ragtune.ingest import IngestSettings, ingest

    def versioned(request: Request) -> Reply:
        if request.headers.get("if-none-match") == '"v1"':
            return Reply(304, b"", headers={"ETag": '"v1"'})
        return Reply(
            body=html("Logbook", "The keeper wrote in the logbook every night.").encode(),
            headers={"ETag": '"v1"', "Last-Modified": "Wed, 01 Oct 2025 10:00:00 GMT"},
        )

    site.routes["/log"] = versioned
    first = ingest([site.base + "/log"], tmp_path / "idx", IngestSettings())
    assert first.report["counts"]["fetched"] == 1
    second = ingest([site.base + "/log"], tmp_path / "idx", IngestSettings())
    assert second.report["counts"] == {"fetched": 0, "unchanged": 1, "skipped": 0, "failed": 0}
    revisit = site.requests_for("/log")[-1]
    assert revisit.headers["if-none-match"] == '"v1"'
    assert revisit.headers["if-modified-since"] == "Wed, 01 Oct 2025 10:00:00 GMT"
    assert second.stats["chunks"] == first.stats["chunks"]


def test_timeout_and_429_are_retried(site: Site) -> None:
    def slow_then_fine(request: Request) -> Reply:
        if len(site.requests_for("/slow")) == 1:
            time.sleep(1.5)  # longer than the 0.5 s timeout
        return Reply(body=html("Slow", "The relief boat was late but arrived.").encode())

    def limited_then_fine(request: Request) -> Reply:
        if len(site.requests_for("/limited")) == 1:
            return Reply(429, b"slow down")  # no Retry-After: exponential backoff
        return Reply(
            body=html("Limited", "The signal station answered on the second call.").encode()
        )

    site.routes["/slow"] = slow_then_fine
    site.routes["/limited"] = limited_then_fine
    reader = WebReader(timeout=0.5)
    documents = reader.load_data([site.base + "/slow", site.base + "/limited"])
    assert len(documents) == 2
    assert len(site.requests_for("/slow")) == 2 and len(site.requests_for("/limited")) == 2
    assert {e.page.attempts for e in reader.report.events if e.page} == {2}


def test_retry_after_holds_back_the_whole_host(site: Site) -> None:
    site.routes["/busy"] = lambda request: (
        Reply(503, b"busy", headers={"Retry-After": "1"})
        if len(site.requests_for("/busy")) == 1
        else Reply(body=html("Busy").encode())
    )
    site.page("/other", html("Other"))
    reader = WebReader(per_host_concurrency=1)
    reader.load_data([site.base + "/busy", site.base + "/other"])
    first_busy = site.requests_for("/busy")[0].at
    # /other was queued behind /busy on one slot: it may not start during the Retry-After.
    assert site.requests_for("/other")[0].at - first_busy >= 0.95
