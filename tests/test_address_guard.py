"""The SSRF guard (ragtune.net.address_guard): which addresses a guarded fetch may
reach, checked where the connection is opened, for every redirect hop, crawl link
and rendered page's request; against real servers on 127.0.0.1, 127.0.0.2 and ::1
that count what reaches them."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.helpers import needs_chromium, one_line_message
from tests.webserver import Reply, Site, serve

from ragtune import WebReader
from ragtune.errors import AddressRefused, FetchError, RagtuneError
from ragtune.ingest import IngestSettings, ingest
from ragtune.net.address_guard import AddressPolicy, check_public_url
from ragtune.sync import sync
from ragtune.web.fetch import Fetcher, RetryPolicy

GUARD = AddressPolicy.of(allow_private=False)
# The one loopback address an operator's allow-list lets through in these tests.
LOCAL_ALLOWED = AddressPolicy.of(allow_private=False, allow_networks=["127.0.0.1/32"])
PAGE = "<html><body><article><h1>Harbour</h1><p>{}</p></article></body></html>"
TEXT = "The harbour lights are lit at dusk by the keeper of the eastern mole. " * 4


def _supports(host: str) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family) as probe:
            probe.bind((host, 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _supports("::1"), reason="this machine has no IPv6 loopback")
needs_127_0_0_2 = pytest.mark.skipif(
    not _supports("127.0.0.2"), reason="this machine cannot bind 127.0.0.2"
)


@contextmanager
def serve_on(
    host: str, site: Site, port: int = 0, tls: ssl.SSLContext | None = None
) -> Iterator[Site]:
    """``site`` served on ``host`` (127.0.0.2, ::1), on ``port`` if given, over TLS
    with ``tls``: tests/webserver.py serves plain HTTP on 127.0.0.1 only."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            site._handle(self)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = Server((host, port), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    shown = f"[{host}]" if ":" in host else host
    site.base = f"http://{shown}:{server.server_address[1]}"
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def site() -> Iterator[Site]:
    with serve(Site()) as running:
        running.page("/", PAGE.format(TEXT))
        yield running


@pytest.fixture()
def other() -> Iterator[Site]:
    """A server on 127.0.0.2, a loopback address no allow-list here names."""
    if not _supports("127.0.0.2"):
        pytest.skip("this machine cannot bind 127.0.0.2")
    with serve_on("127.0.0.2", Site()) as running:
        running.page("/secret", PAGE.format("The vault code is 1234."))
        running.page("/robots.txt", "")
        yield running


@pytest.fixture()
def ipv6() -> Iterator[Site]:
    if not _supports("::1"):
        pytest.skip("this machine has no IPv6 loopback")
    with serve_on("::1", Site()) as running:
        running.page("/", PAGE.format("The vault code is 1234."))
        yield running


def _fetcher(policy: AddressPolicy) -> Fetcher:
    return Fetcher(timeout=5.0, retry=RetryPolicy(retries=0), address_policy=policy)


# --- the policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "link-local address (a cloud metadata service)"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "private"),  # reserved for future use; Python files it as private
        ("192.0.2.1", "private"),  # documentation
        ("fec0::1", "site-local"),
        ("::7f00:1", "reserved"),  # IPv4-compatible, deprecated
        ("::ffff:127.0.0.1", "carrying 127.0.0.1, a loopback"),
        ("::ffff:169.254.169.254", "carrying 169.254.169.254, a link-local"),
        ("2002:7f00:1::1", "carrying 127.0.0.1, a loopback"),  # 6to4
        ("2002:a00:1::1", "carrying 10.0.0.1, a private"),
        ("64:ff9b::a9fe:a9fe", "carrying 169.254.169.254, a link-local"),  # NAT64
    ],
)
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    refusal = GUARD.refusal(address)
    assert refusal is not None and kind in refusal, refusal
    assert AddressPolicy.of(allow_private=True).refusal(address) is None


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:93.184.216.34", "2002:5db8:d822::1"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert GUARD.refusal(address) is None


def test_allowed_networks_let_their_addresses_through() -> None:
    policy = AddressPolicy.of(False, ["10.0.0.0/8", "fd00::/8", "127.0.0.1"])
    assert policy.refusal("10.20.30.40") is None
    assert policy.refusal("fd00::5") is None
    assert policy.refusal("::ffff:127.0.0.1") is None  # judged by the IPv4 it carries
    assert policy.refusal("127.0.0.2") == "127.0.0.2 is a loopback address"
    assert policy.refusal("192.168.0.1") is not None


@pytest.mark.parametrize("network", ["10.1.2.3/8", "intranet", "10.0.0.0/33", ""])
def test_a_malformed_allowed_network_is_one_line(network: str) -> None:
    with pytest.raises(RagtuneError) as error:
        AddressPolicy.of(False, [network])
    one_line_message(error, "allowed network")


# --- URLs that spell a refused address another way -------------------------------------------

BYPASSES = [
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",
    "http://2130706433:{port}/",  # decimal: the resolver reads it as 127.0.0.1
    "http://0x7f000001:{port}/",  # hex
    "http://0177.0.0.1:{port}/",  # octal
    "http://127.1:{port}/",  # short form
    "http://0.0.0.0:{port}/",  # connecting to it reaches this machine
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://user:pw@127.0.0.1:{port}/",
    "http://evil.example@127.0.0.1:{port}/",
    "http://127.0.0.1:{port}\\@evil.example/",
]


@pytest.mark.parametrize("template", BYPASSES)
def test_every_spelling_of_a_local_address_is_refused_before_a_request(
    template: str, site: Site
) -> None:
    url = template.format(port=site.base.rsplit(":", 1)[1])
    with _fetcher(GUARD) as fetcher, pytest.raises(FetchError) as fetched:
        fetcher.fetch(url)
    message = one_line_message(fetched)
    assert fetched.value.kind in ("address_refused", "invalid_url"), message
    with pytest.raises(AddressRefused) as checked:
        check_public_url(url, GUARD)
    one_line_message(checked)
    assert site.log == []  # nothing reached the server


@pytest.mark.parametrize("template", BYPASSES)
def test_without_the_guard_loopback_is_fetched_as_before(template: str, site: Site) -> None:
    if "@" in template or "0177" in template or ("[" in template and not _supports("::1")):
        pytest.skip("refused without the guard too: credentials, or an invalid address")
    url = template.format(port=site.base.rsplit(":", 1)[1])
    with _fetcher(AddressPolicy()) as fetcher:
        assert fetcher.fetch(url).status in (200, 404)
    assert len(site.log) == 1


def test_ipv6_loopback_is_refused(ipv6: Site) -> None:
    with _fetcher(GUARD) as fetcher, pytest.raises(AddressRefused) as error:
        fetcher.fetch(ipv6.base + "/")
    one_line_message(error, "::1 is a loopback address")
    assert ipv6.log == []
    with _fetcher(AddressPolicy()) as fetcher:  # the server is there: only the guard stopped it
        assert fetcher.fetch(ipv6.base + "/").status == 200


def test_cloud_metadata_is_refused_without_connecting() -> None:
    started = time.monotonic()
    with _fetcher(GUARD) as fetcher, pytest.raises(AddressRefused) as error:
        fetcher.fetch("http://169.254.169.254/latest/meta-data/")
    one_line_message(error, "169.254.169.254 is a link-local address (a cloud metadata service)")
    assert time.monotonic() - started < 2.0  # refused, not timed out


def test_an_allowed_network_reaches_its_server(site: Site) -> None:
    with _fetcher(LOCAL_ALLOWED) as fetcher:
        assert fetcher.fetch(site.base + "/").status == 200
    with _fetcher(LOCAL_ALLOWED) as fetcher, pytest.raises(AddressRefused):
        fetcher.fetch(site.base.replace("127.0.0.1", "0x7f000002") + "/")  # 127.0.0.2
    assert len(site.log) == 1


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "not an http(s) URL"),
        ("ftp://example.com/", "not an http(s) URL"),
        ("file:///etc/passwd", "not an http(s) URL"),
        ("http:///path", "no host"),
        ("http://exa\x00mple.com/", "not a valid URL"),
        ("http://example.com/\r\nHost: 127.0.0.1", "not a valid URL"),
        ("http://" + "a" * 70_000 + ".com/", "not a valid URL"),
        ("http://[::1/", "not a valid URL"),
        ("http://host.invalid./", "cannot resolve the host"),
    ],
)
def test_hostile_strings_get_one_line(url: str, fragment: str) -> None:
    with pytest.raises(AddressRefused) as error:
        check_public_url(url, GUARD)
    message = one_line_message(error, fragment)
    assert len(message) < 300 and message.isprintable()


def test_the_address_checked_is_the_address_connected_to(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a name that answers 127.0.0.1 (allowed) once and 127.0.0.2
    (refused) after. The connection goes to the address that was checked."""
    port = int(site.base.rsplit(":", 1)[1])
    if not _supports("127.0.0.2"):
        pytest.skip("this machine cannot bind 127.0.0.2")
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"] + ["127.0.0.2"] * 10)

    def rebinding(host: object, *args: object, **kwargs: object) -> object:
        if host == "rebind.test":
            return real(next(answers), *args, **kwargs)  # type: ignore[arg-type]
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    with serve_on("127.0.0.2", Site(), port) as rebound:
        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        with _fetcher(LOCAL_ALLOWED) as fetcher:
            assert fetcher.fetch(f"http://rebind.test:{port}/").status == 200
        assert len(site.log) == 1 and rebound.log == []


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl makes the test certificate")
def test_tls_is_verified_against_the_urls_host_not_the_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard connects to an IP literal; TLS still names and verifies the host."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # httpx trusts it, as it trusts the system's
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with serve_on("127.0.0.1", Site(), tls=context) as secure:
        secure.page("/", PAGE.format(TEXT))
        port = secure.base.rsplit(":", 1)[1]
        policy = AddressPolicy.of(False, ["127.0.0.0/8", "::1"])
        with _fetcher(policy) as fetcher:
            assert fetcher.fetch(f"https://localhost:{port}/").status == 200
        with _fetcher(policy) as fetcher, pytest.raises(FetchError) as error:
            fetcher.fetch(f"https://127.0.0.1:{port}/")  # the certificate names localhost only
        assert "certificate" in str(error.value).lower() or "ssl" in str(error.value).lower()


# --- redirects ---------------------------------------------------------------------------------


def test_a_redirect_to_a_refused_address_is_not_followed(site: Site, other: Site) -> None:
    site.routes["/go"] = Reply(302, headers={"Location": other.base + "/secret"})
    with _fetcher(LOCAL_ALLOWED) as fetcher, pytest.raises(AddressRefused) as error:
        fetcher.fetch(site.base + "/go")
    one_line_message(error, f"redirect to {other.base}/secret", "127.0.0.2 is a loopback address")
    assert [r.path for r in site.log] == ["/go"]
    assert other.log == []


def test_a_redirect_chain_to_ipv6_loopback_is_refused(site: Site, ipv6: Site) -> None:
    site.routes["/one"] = Reply(301, headers={"Location": "/two"})
    site.routes["/two"] = Reply(307, headers={"Location": ipv6.base + "/"})
    with _fetcher(LOCAL_ALLOWED) as fetcher, pytest.raises(AddressRefused) as error:
        fetcher.fetch(site.base + "/one")
    one_line_message(error, "::1 is a loopback address")
    assert [r.path for r in site.log] == ["/one", "/two"]
    assert ipv6.log == []


# --- proxies ---------------------------------------------------------------------------------


def test_a_guarded_fetch_ignores_the_environments_proxy(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(Site()) as proxy:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.base)
        monkeypatch.setenv("http_proxy", proxy.base)
        with _fetcher(LOCAL_ALLOWED) as fetcher:
            assert fetcher.fetch(site.base + "/").status == 200
        assert proxy.log == [] and len(site.log) == 1  # connected directly, and checked
        with _fetcher(AddressPolicy()) as fetcher, pytest.raises(FetchError):
            fetcher.fetch(site.base + "/")  # unguarded: through the proxy, which has no page
        assert len(proxy.log) == 1


# --- through the product -----------------------------------------------------------------------


def test_ingest_refuses_a_loopback_url_and_leaves_no_index(site: Site, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    settings = IngestSettings(allow_private_urls=False)
    with pytest.raises(RagtuneError) as error:
        ingest([site.base + "/"], index_dir, settings)
    one_line_message(error, "127.0.0.1 is a loopback address")
    assert site.log == []
    assert not index_dir.exists() or not any(index_dir.iterdir())


def test_ingest_reads_loopback_by_default_and_through_an_allowed_network(
    site: Site, tmp_path: Path
) -> None:
    result = ingest([site.base + "/"], tmp_path / "cli", IngestSettings())
    assert result.documents == 1
    allowed = IngestSettings(allow_private_urls=False, url_allow_networks=["127.0.0.0/8"])
    assert ingest([site.base + "/"], tmp_path / "served", allowed).documents == 1


def test_sync_through_the_guard_refuses_what_the_cli_indexed(site: Site, tmp_path: Path) -> None:
    ingest([site.base + "/"], tmp_path / "index", IngestSettings())
    before = len(site.log)  # the ingest's robots.txt and page
    with pytest.raises(RagtuneError) as error:
        sync(tmp_path / "index", allow_private_urls=False)
    one_line_message(error, "sync failed", "127.0.0.1 is a loopback address")
    assert len(site.log) == before  # nothing from the sync
    assert sync(tmp_path / "index", url_allow_networks=["127.0.0.1/32"]).unchanged == 1


def test_a_crawl_reads_allowed_pages_and_reports_the_refused_link(site: Site, other: Site) -> None:
    site.page(
        "/", PAGE.format(TEXT) + f'<a href="/more">more</a><a href="{other.base}/secret">s</a>'
    )
    site.page("/more", PAGE.format("The western mole has a green light that flashes twice."))
    reader = WebReader(crawl=True, same_site=False, retries=0, address_policy=LOCAL_ALLOWED)
    documents = reader.load_data([site.base + "/"])
    assert sorted(d.metadata["url"] for d in documents) == [site.base + "/", site.base + "/more"]
    [refused] = [e for e in reader.report.events if e.url.startswith(other.base)]
    assert refused.status == "failed" and "127.0.0.2 is a loopback address" in refused.reason
    assert other.log == []  # not even its robots.txt


@needs_chromium
def test_a_rendered_page_reaches_no_refused_address(site: Site, other: Site) -> None:
    site.routes["/app"] = Reply(
        body=f"""<!doctype html><html><body><div id="root"></div>
<script src="/bundle.js"></script>
<script>fetch("{other.base}/secret").then(r => r.text())
  .then(t => document.body.insertAdjacentHTML("beforeend", "<p>" + t + "</p>"));</script>
<img src="{other.base}/secret">
<script>new WebSocket("{other.base.replace("http:", "ws:")}/socket");</script></body></html>""".encode()
    )
    site.routes["/bundle.js"] = Reply(
        body=b'document.getElementById("root").innerHTML = "<article><p>'
        + TEXT.encode()
        + b'</p></article>";',
        content_type="text/javascript",
    )
    # The origin is allowed for rendering: only the address guard stands in the way.
    reader = WebReader(
        render="auto", retries=0, render_allow=[other.base], address_policy=LOCAL_ALLOWED
    )
    [document] = reader.load_data([site.base + "/app"])
    assert "harbour lights" in document.text  # rendered, its own scripts fetched by the guard
    assert "vault" not in document.text
    assert other.log == []
