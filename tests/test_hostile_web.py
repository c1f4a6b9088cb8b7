"""Hostile web input from issue #11: credentials in URLs, redirects that leave the site
or the web, Crawl-delays and drips that would stall a crawl, oversized sitemaps and
robots.txt files, and rendered pages that call other hosts. Each ends as a reported
reason (or a refusal), never as a hang, a traceback or a leaked secret."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.helpers import assert_one_line_error, needs_chromium, run_cli
from tests.webserver import Reply, Site, dripping_headers_server, serve

from ragtune import VectorStoreIndex, WebReader
from ragtune.errors import RagtuneError
from ragtune.ingest import REPORT_FILE, SOURCES_FILE, IngestSettings, ingest
from ragtune.net.deadline import Deadline, deadline_client
from ragtune.sync import sync
from ragtune.web import sitemaps
from ragtune.web.render import chromium_args

SECRET = "hunter2pass"
XMLNS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def html(title: str, body: str = "", links: list[str] | None = None) -> str:
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links or [])
    text = body or f"{title} is a page about lighthouses and the keepers who tend their lamps."
    return (
        f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>"
        f"<p>{text}</p>{anchors}</article></body></html>"
    )


@pytest.fixture()
def site() -> Iterator[Site]:
    with serve(Site()) as running:
        yield running


@pytest.fixture()
def other() -> Iterator[Site]:
    """A second site: same address, another port, so another host for the crawl."""
    with serve(Site()) as running:
        yield running


def redirect(location: str, status: int = 302) -> Reply:
    return Reply(status, b"", headers={"Location": location})


def events(reader: WebReader) -> dict[str, tuple[str, str]]:
    return {e.url: (e.status, e.reason) for e in reader.report.events}


def files_text(directory: Path) -> str:
    return "".join(
        path.read_bytes().decode("utf-8", "replace")
        for path in directory.rglob("*")
        if path.is_file()
    )


# --- Credentials in URLs (item 3) ---------------------------------------------------------


def test_invalid_seed_with_credentials_fails_the_run_without_echoing_the_password(
    site: Site, tmp_path: Path
) -> None:
    site.page("/", html("Home"))
    bad = f"http://user:{SECRET}@bad host/"
    index_dir = tmp_path / "index"
    with pytest.raises(RagtuneError) as raised:
        ingest([bad, site.base + "/"], index_dir, IngestSettings(render="never"))
    assert SECRET not in str(raised.value) and "1 of 2 sources failed" in str(raised.value)
    assert not index_dir.exists() or not any(index_dir.iterdir())


def test_skipped_seed_with_credentials_leaves_no_password_and_no_record(
    site: Site, tmp_path: Path
) -> None:
    site.page("/", html("Home"))
    sources = [f"http://user:{SECRET}@bad host/", f"http://user:{SECRET}@127.0.0.1:1/x"]
    index_dir = tmp_path / "index"
    result = ingest(
        [*sources, site.base + "/"], index_dir, IngestSettings(render="never", skip_failures=True)
    )
    assert result.documents == 1
    assert SECRET not in files_text(index_dir)
    assert "bad" not in (index_dir / SOURCES_FILE).read_text()
    failed = [u for u in result.report["urls"] if u["status"] == "failed"]
    assert len(failed) == 2 and all("***@" in u["url"] for u in failed)
    assert any("user name or password" in u["reason"] for u in failed)
    assert "hunter" not in (index_dir / REPORT_FILE).read_text()


def test_valid_url_with_credentials_is_refused_with_a_clear_error(site: Site) -> None:
    site.page("/", html("Home"))
    url = site.base.replace("http://", f"http://admin:{SECRET}@") + "/"
    reader = WebReader(retries=0)
    assert reader.load_data([url]) == []
    [event] = reader.report.events
    assert event.status == "failed" and "user name or password" in event.reason
    assert SECRET not in event.url + event.reason and site.log == []


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        (f"http://user:{SECRET}@bad host/", SECRET),
        (f"http://{SECRET}@[::1/", SECRET),  # a token as the user name
        ("http://user:pa/ss@example.com/", "pa"),  # the parser would quote "Invalid port: 'pa'"
        ("http://" + "u:" + SECRET + "@" + "a" * 9000 + ".com/", SECRET),
    ],
)
def test_unusable_url_with_credentials_is_reported_without_them(url: str, secret: str) -> None:
    reader = WebReader(retries=0)
    assert reader.load_data([url]) == []
    [event] = reader.report.events
    assert event.status == "failed" and "***@" in event.url
    assert secret not in event.url + event.reason + str(event.error)


@pytest.mark.parametrize("query", [f"token={SECRET}", f"api_key={SECRET}&page=2", f"sig={SECRET}"])
def test_a_named_url_with_a_secret_in_its_query_is_refused_and_never_kept(
    site: Site, tmp_path: Path, query: str
) -> None:
    # The URL is what an index keeps, cites and reports: a token in it would be too.
    site.page("/", html("Home"))
    site.page("/doc", html("Doc"))
    index = tmp_path / "index"
    url = f"{site.base}/doc?{query}"
    refused = run_cli("ingest", url, "--index", str(index))
    assert_one_line_error(refused, "secret in its query")
    assert SECRET not in refused.stderr + refused.stdout and not index.exists()

    skipped = run_cli("ingest", url, site.base + "/", "--index", str(index), "--skip-failures")
    assert skipped.returncode == 0, skipped.stderr
    assert SECRET not in skipped.stderr + skipped.stdout + files_text(index)
    assert site.requests_for("/doc") == []
    # A link the crawl finds is the site's own, not the user's secret: followed as it is.
    assert WebReader(retries=0).load_data([f"{site.base}/doc?page=2"])


BAD_HOSTS = ["http://a..b/", "http://" + "a" * 64 + ".com/", "http://.example.com/"]


@pytest.mark.parametrize("url", BAD_HOSTS)
def test_a_host_name_that_cannot_be_encoded_is_one_failure(
    site: Site, tmp_path: Path, url: str
) -> None:
    # socket encodes the host with the idna codec; its UnicodeError once ended the run.
    site.page("/", html("Home"))
    index = tmp_path / "index"
    together = run_cli("ingest", url, site.base + "/", "--index", str(index))
    assert_one_line_error(together, "1 of 2 sources failed", "bad host name")
    assert not index.exists()

    skipped = run_cli("ingest", url, site.base + "/", "--index", str(index), "--skip-failures")
    assert skipped.returncode == 0, skipped.stderr
    assert "Traceback" not in skipped.stderr
    [found] = VectorStoreIndex.load(index).as_retriever().retrieve("lighthouses keepers")[:1]
    assert found.node.metadata["url"] == site.base + "/"


def test_a_host_name_that_cannot_be_encoded_is_a_failed_connection_to_every_client() -> None:
    # The same refusal below check_url, for clients that never call it (LLM, embedder).
    client = deadline_client(Deadline())
    with pytest.raises(httpx.ConnectError, match="invalid host name"):
        client.get(BAD_HOSTS[0])


def test_cli_never_prints_the_password(site: Site, tmp_path: Path) -> None:
    site.page("/", html("Home"))
    index = str(tmp_path / "index")
    result = run_cli("ingest", f"http://user:{SECRET}@bad host/", site.base + "/", "--index", index)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_credentials_in_a_redirect_are_dropped(site: Site) -> None:
    site.routes["/go"] = redirect(site.base.replace("http://", f"http://u:{SECRET}@") + "/in")
    site.page("/in", html("Inside"))
    [document] = WebReader(retries=0).load_data([site.base + "/go"])
    assert SECRET not in str(document.metadata)
    assert "authorization" not in site.requests_for("/in")[0].headers


# --- Redirects and scope (item 4) ------------------------------------------------------------


def test_seed_redirect_to_another_port_is_not_followed(site: Site, other: Site) -> None:
    other.page("/landing", html("Elsewhere"))
    site.routes["/go"] = redirect(other.base + "/landing")
    reader = WebReader(retries=0)
    assert reader.load_data([site.base + "/go"]) == []
    status, reason = events(reader)[site.base + "/go"]
    assert status == "skipped" and "outside the crawl scope" in reason
    assert other.base + "/landing" in reason
    assert other.log == []


def test_same_site_link_redirecting_off_site_is_not_followed(site: Site, other: Site) -> None:
    other.page("/landing", html("Elsewhere"))
    site.page("/", html("Home", links=["/out"]))
    site.routes["/out"] = redirect(other.base + "/landing", 301)
    reader = WebReader(crawl=True, retries=0, use_sitemaps=False)
    documents = reader.load_data([site.base + "/"])
    assert [d.metadata["url"] for d in documents] == [site.base + "/"]
    assert events(reader)[site.base + "/out"][0] == "skipped"
    assert reader.report.skipped_by_kind() == {"redirect": 1}
    assert other.log == []


def test_redirect_obeys_the_target_hosts_robots_and_records_the_final_url(
    site: Site, other: Site
) -> None:
    other.routes["/robots.txt"] = Reply(
        body=b"User-agent: *\nDisallow: /private\n", content_type="text/plain"
    )
    other.page("/private/page", html("Private"))
    other.page("/public", html("Public"))
    site.routes["/to-private"] = redirect(other.base + "/private/page")
    site.routes["/to-public"] = redirect(other.base + "/public")
    reader = WebReader(retries=0, same_site=False)
    [document] = reader.load_data([site.base + "/to-private", site.base + "/to-public"])
    assert other.requests_for("/private/page") == []
    status, reason = events(reader)[site.base + "/to-private"]
    assert status == "skipped" and "robots.txt" in reason
    assert document.metadata["final_url"] == other.base + "/public"


def test_same_host_redirect_into_a_disallowed_path_is_not_followed(site: Site) -> None:
    site.routes["/robots.txt"] = Reply(
        body=b"User-agent: *\nDisallow: /private\n", content_type="text/plain"
    )
    site.page("/private/page", html("Private"))
    site.routes["/go"] = redirect("/private/page")
    reader = WebReader(retries=0)
    assert reader.load_data([site.base + "/go"]) == []
    assert site.requests_for("/private/page") == []
    assert "robots.txt" in events(reader)[site.base + "/go"][1]


def test_sitemap_index_entries_on_other_hosts_are_not_fetched(site: Site, other: Site) -> None:
    other.routes["/sitemap.xml"] = Reply(
        body=f"<urlset {XMLNS}><url><loc>{site.base}/hidden</loc></url></urlset>".encode(),
        content_type="application/xml",
    )
    site.routes["/sitemap.xml"] = Reply(
        body=f"<sitemapindex {XMLNS}><sitemap><loc>{other.base}/sitemap.xml</loc></sitemap>"
        "</sitemapindex>".encode(),
        content_type="application/xml",
    )
    site.page("/", html("Home"))
    WebReader(crawl=True, retries=0).load_data([site.base + "/"])
    assert other.log == []


def test_sync_does_not_reindex_a_redirect_target_under_the_old_url(
    site: Site, other: Site, tmp_path: Path
) -> None:
    site.page("/page", html("Tides", "The spring tide at the harbour mouth runs four knots."))
    index_dir = tmp_path / "index"
    ingest([site.base + "/page"], index_dir, IngestSettings(render="never"))
    other.page("/spam", html("Spam", "Buy cheap watches from the other host today."))
    site.routes["/page"] = redirect(other.base + "/spam", 301)
    result = sync(index_dir, timeout=5)
    [synced] = result.urls
    assert synced.action == "skipped" and "outside the crawl scope" in synced.reason
    assert other.log == []
    texts = [
        n.text for n in VectorStoreIndex.load(index_dir).as_retriever(10).retrieve("tide watches")
    ]
    assert any("four knots" in t for t in texts) and not any("watches" in t for t in texts)


# --- Redirects out of the web (item 9) -----------------------------------------------------


@pytest.mark.parametrize(
    "location",
    ["data:text/html,<p>injected</p>", "file:///etc/passwd", "javascript:alert(1)", "ftp://x/y"],
)
def test_redirect_to_a_non_http_url_is_one_reported_failure(site: Site, location: str) -> None:
    site.routes["/go"] = redirect(location)
    site.page("/ok", html("Fine"))
    reader = WebReader(retries=0)
    [document] = reader.load_data([site.base + "/go", site.base + "/ok"])
    assert document.metadata["url"] == site.base + "/ok"
    status, reason = events(reader)[site.base + "/go"]
    assert status == "failed" and "not an http(s) URL" in reason
    assert "passwd" not in reason and "injected" not in reason


# --- Crawl-delay (item 12) -----------------------------------------------------------------


def test_huge_crawl_delay_skips_the_host_instead_of_waiting(site: Site) -> None:
    site.routes["/robots.txt"] = Reply(
        body=b"User-agent: *\nCrawl-delay: 100000\n", content_type="text/plain"
    )
    site.page("/", html("Home", links=["/a", "/b"]))
    started = time.monotonic()
    reader = WebReader(crawl=True, retries=0, use_sitemaps=False)
    assert reader.load_data([site.base + "/"]) == []
    assert time.monotonic() - started < 5
    [(status, reason)] = events(reader).values()
    assert status == "skipped" and "Crawl-delay of 100000 s" in reason and "too slow" in reason
    assert site.requests_for("/") == []


# --- A response that drips (item 13) ---------------------------------------------------------


@pytest.fixture()
def dripping_url() -> Iterator[str]:
    """A server whose headers drip for 30 s (tests/webserver.py)."""
    with dripping_headers_server() as url:
        yield url


def test_headers_that_drip_are_cut_off_by_the_deadline(dripping_url: str) -> None:
    started = time.monotonic()
    reader = WebReader(retries=2, timeout=1.0, obey_robots=False)
    assert reader.load_data([dripping_url]) == []
    elapsed = time.monotonic() - started
    [event] = reader.report.events
    assert event.status == "failed"
    assert event.reason == "timed out: no complete response within 3 s"  # 3 x --timeout
    assert elapsed < 6, elapsed  # one attempt: a drip is not retried


def test_a_host_whose_robots_txt_drips_is_one_wait_not_two(dripping_url: str) -> None:
    # Its robots.txt drips too: the host is too slow to crawl, and its pages are not
    # each made to wait for a deadline of their own (the CLI: --timeout 2 took 12.7 s).
    started = time.monotonic()
    reader = WebReader(retries=2, timeout=1.0)
    assert reader.load_data([dripping_url + "page"]) == []
    elapsed = time.monotonic() - started
    [event] = reader.report.events
    assert event.status == "skipped"
    assert event.reason == (
        "its robots.txt timed out: no complete response within 3 s: the host is too slow to crawl"
    )
    assert elapsed < 5, elapsed


# --- Oversized sitemaps and robots.txt (item 17) ---------------------------------------------


def streamed_sitemap(site: Site, real: list[str], size: int) -> Reply:
    """A urlset listing ``real`` pages first, padded with more entries to ``size`` bytes,
    sent without a Content-Length."""

    def body() -> Iterator[bytes]:
        yield f'<?xml version="1.0"?><urlset {XMLNS}>'.encode()
        for path in real:
            yield f"<url><loc>{site.base}{path}</loc></url>".encode()
        sent, n = 0, 0
        while sent < size:
            block = "".join(
                f"<url><loc>{site.base}/filler/{n + i}</loc></url>" for i in range(2000)
            ).encode()
            n += 2000
            sent += len(block)
            yield block
        yield b"</urlset>"

    return Reply(body=body(), content_type="application/xml")


def test_sitemap_larger_than_the_page_limit_is_still_read(site: Site) -> None:
    site.page("/", html("Home"))
    site.page("/hidden", html("Hidden", "Only the sitemap knows the hidden lighthouse."))
    site.routes["/sitemap.xml"] = lambda request: streamed_sitemap(site, ["/hidden"], 3 << 20)
    reader = WebReader(crawl=True, retries=0, max_bytes=1 << 20, max_pages=2)
    documents = reader.load_data([site.base + "/"])
    assert {d.metadata["url"] for d in documents} == {site.base + "/", site.base + "/hidden"}


@pytest.mark.parametrize("gzipped", [False, True])
def test_sitemap_over_its_own_limit_is_truncated_and_reported(
    site: Site, monkeypatch: pytest.MonkeyPatch, gzipped: bool
) -> None:
    monkeypatch.setattr(sitemaps, "MAX_SITEMAP_BYTES", 1 << 20)
    site.page("/", html("Home"))
    site.page("/hidden", html("Hidden", "Only the sitemap knows the hidden lighthouse."))
    if gzipped:  # a .xml.gz file: inflated only up to the limit
        xml = b"".join(streamed_sitemap(site, ["/hidden"], 3 << 20).body)  # type: ignore[arg-type]
        site.routes["/sitemap.xml"] = Reply(
            body=gzip.compress(xml), content_type="application/x-gzip"
        )
    else:
        site.routes["/sitemap.xml"] = lambda request: streamed_sitemap(site, ["/hidden"], 3 << 20)
    reader = WebReader(crawl=True, retries=0, max_pages=2)
    documents = reader.load_data([site.base + "/"])
    assert {d.metadata["url"] for d in documents} == {site.base + "/", site.base + "/hidden"}
    status, reason = events(reader)[site.base + "/sitemap.xml"]
    assert status == "skipped" and "truncated" in reason
    assert reader.report.skipped_by_kind() == {"sitemap": 1}
    assert reader.failures == []  # a note on discovery, not a failed page


def test_robots_txt_over_the_page_limit_still_applies(site: Site) -> None:
    rules = b"User-agent: *\nDisallow: /private\n" + b"# padding\n" * 300_000  # 3 MB
    site.routes["/robots.txt"] = Reply(body=rules, content_type="text/plain")
    site.page("/", html("Home", links=["/private/secret"]))
    site.page("/private/secret", html("Secret"))
    WebReader(crawl=True, retries=0, max_bytes=1 << 20, use_sitemaps=False).load_data(
        [site.base + "/"]
    )
    assert site.requests_for("/private/secret") == []


# --- Rendering (item 4) ----------------------------------------------------------------------


def test_chromium_sandbox_is_off_only_for_root() -> None:
    assert "--no-sandbox" not in chromium_args(running_as_root=False)
    assert "--no-sandbox" in chromium_args(running_as_root=True)


@needs_chromium
def test_rendered_pages_stay_on_their_origin_and_under_the_byte_cap(
    site: Site, other: Site
) -> None:
    other.routes["/beacon"] = Reply(body=b"{}", content_type="application/json")
    other.routes["/pixel.png"] = Reply(body=b"", content_type="image/png")
    site.routes["/data.json"] = Reply(
        body=b'{"fact": "The lamp at Skerry Point burns colza oil."}',
        content_type="application/json",
    )
    shell = f"""<!doctype html><html><head><title>Lamp</title></head><body><div id="root"></div>
<img src="{other.base}/pixel.png"><img src="/out">
<script>
  fetch("{other.base}/beacon").catch(() => {{}});
  fetch("/data.json").then(r => r.json()).then(d => {{
    document.getElementById("root").innerHTML = "<article><h1>Lamp</h1><p>" + d.fact + "</p></article>";
  }});
</script></body></html>"""
    site.routes["/app"] = Reply(body=shell.encode())
    site.routes["/out"] = redirect("/out-again")  # hop by hop, Chromium would follow unseen
    site.routes["/out-again"] = redirect(other.base + "/pixel.png")
    site.routes["/nav"] = Reply(body=b'<html><body><script>location.href = "/out"</script>')
    site.routes["/bloat"] = Reply(
        body=b"<html><body><div id=r></div><script>"
        b"document.getElementById('r').textContent = 'x'.repeat(300000);</script></body></html>"
    )
    reader = WebReader(render="always", retries=0, max_bytes=200_000)
    [document] = reader.load_data([site.base + x for x in ("/app", "/nav", "/bloat")])
    assert "colza oil" in document.text  # same-origin requests still work
    assert other.log == []
    status, reason = events(reader)[site.base + "/bloat"]
    assert status == "failed" and "over the 200000-byte limit" in reason


def test_scope_counts_www_as_the_same_site_and_nothing_else() -> None:
    from ragtune.web.urls import UrlScope

    scope = UrlScope(["https://example.com/docs/"])
    assert scope.allows_host("https://www.example.com/docs/a")
    assert scope.allows_host("http://example.com/b")
    for other in (
        "https://docs.example.com/",
        "https://example.com:8443/",
        "https://www.example.com.evil.test/",
        "https://wwwexample.com/",
        "https://evil.test/www.example.com",
    ):
        assert not scope.allows_host(other), other
    assert UrlScope(["https://www.example.com/"]).allows_host("https://example.com/")
