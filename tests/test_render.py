"""JavaScript rendering with the system's Chromium (installed by `make setup`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers import assert_one_line_error, needs_chromium, run_cli
from tests.webserver import Reply, Site, serve

from ragtune import WebReader
from ragtune.errors import RagtuneError
from ragtune.web.render import allowed_origin, needs_rendering

APP_SHELL = b"""<!doctype html><html><head><title>Tide tables</title></head>
<body><div id="root"></div><noscript>Please enable JavaScript.</noscript>
<script>
  const facts = ["High tide at Saint-Malo reaches 13 metres during the equinox spring tides.",
                 "The harbourmaster posts the tide table at the lock gate every morning."];
  document.getElementById("root").innerHTML =
    "<article><h1>Tide tables</h1>" + facts.map(f => "<p>" + f + "</p>").join("") + "</article>";
</script></body></html>"""
STATIC_PAGE = (
    b"<html><body><article><h1>Static</h1><p>"
    + b"A long static page about the lighthouse keeper and his lamp. " * 10
    + b"</p></article><script>console.log('analytics')</script></body></html>"
)


@pytest.fixture()
def site() -> Iterator[Site]:
    with serve(Site()) as running:
        running.routes["/app"] = Reply(body=APP_SHELL)
        running.page("/static", STATIC_PAGE.decode())
        yield running


def test_app_shell_detection() -> None:
    assert needs_rendering(APP_SHELL)
    assert not needs_rendering(STATIC_PAGE)
    assert not needs_rendering(b"<html><body><p>Short page, no scripts.</p></body></html>")


@needs_chromium
def test_auto_renders_only_the_app_shell(site: Site) -> None:
    reader = WebReader(render="auto")
    documents = {
        d.metadata["url"]: d for d in reader.load_data([site.base + "/app", site.base + "/static"])
    }
    app = documents[site.base + "/app"]
    assert "13 metres during the equinox" in app.text
    assert app.metadata["rendered"] is True
    assert "rendered" not in documents[site.base + "/static"].metadata


def test_never_reports_the_page_as_needing_rendering(site: Site) -> None:
    reader = WebReader(render="never")
    assert reader.load_data([site.base + "/app"]) == []
    [event] = reader.report.events
    assert event.status == "failed"
    assert "needs rendering (use --render auto)" in event.reason


@needs_chromium
def test_cli_render_modes(site: Site, tmp_path: Path) -> None:
    ok = run_cli("ingest", site.base + "/app", "--render", "auto", "--index", str(tmp_path / "a"))
    assert ok.returncode == 0, ok.stderr
    asked = run_cli(
        "retrieve", "how high is the equinox tide", "--index", str(tmp_path / "a"), "--json"
    )
    assert "13 metres" in asked.stdout
    assert_one_line_error(
        run_cli("ingest", site.base + "/app", "--render", "never", "--index", str(tmp_path / "n")),
        "needs rendering",
    )
    assert_one_line_error(
        run_cli(
            "ingest", site.base + "/app", "--render", "sometimes", "--index", str(tmp_path / "x")
        ),
        "'never', 'auto', 'always'",
    )


# --- Origins a rendered page may also reach (--render-allow) ----------------------------

BUNDLE = b"""document.getElementById("root").innerHTML += "<article><h1>Buoys</h1>" +
  "<p>A red can buoy marks the port side of the channel into the harbour.</p></article>";"""
HOPPED_BUNDLE = b"""document.getElementById("root").innerHTML +=
  "<p>A green conical buoy marks the starboard side, as the pilot book says.</p>";"""


@pytest.fixture()
def cdn() -> Iterator[Site]:
    """Another origin (same address, another port) that serves an app's scripts."""
    with serve(Site()) as running:
        running.routes["/bundle.js"] = Reply(body=BUNDLE, content_type="text/javascript")
        running.routes["/hopped.js"] = Reply(body=HOPPED_BUNDLE, content_type="text/javascript")
        yield running


@pytest.fixture()
def spa(site: Site, cdn: Site) -> str:
    """An app shell whose content comes from scripts on ``cdn``: one named directly,
    one reached through a redirect from the page's own origin."""
    site.routes["/spa"] = Reply(
        body=f"""<!doctype html><html><head><title>Buoys</title></head><body>
<div id="root"></div><script src="{cdn.base}/bundle.js"></script>
<script src="/lib.js"></script></body></html>""".encode()
    )
    site.routes["/lib.js"] = Reply(302, headers={"Location": cdn.base + "/hopped.js"})
    return site.base + "/spa"


@needs_chromium
def test_allowed_origins_serve_a_rendered_pages_scripts(spa: str, cdn: Site) -> None:
    reader = WebReader(render="auto", retries=0, render_allow=[cdn.base + "/"])
    [document] = reader.load_data([spa])
    assert "red can buoy marks the port side" in document.text
    assert "green conical buoy" in document.text  # a redirect hop onto an allowed origin
    assert {r.path for r in cdn.log} == {"/bundle.js", "/hopped.js"}


@needs_chromium
def test_without_the_allow_list_other_origins_stay_unreached(spa: str, cdn: Site) -> None:
    reader = WebReader(render="auto", retries=0)
    documents = reader.load_data([spa])
    assert not any("buoy" in document.text for document in documents)
    assert cdn.log == []
    [event] = reader.report.events
    # An empty shell, and the report says which origin the page wanted and how to allow it.
    assert event.status == "failed" and event.reason.startswith("no readable text")
    assert cdn.base.lower() in event.reason and "--render-allow" in event.reason


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("HTTPS://CDN.Example.com:443/", "https://cdn.example.com"),
        ("http://api.example.com:80", "http://api.example.com"),
        ("http://127.0.0.1:8001", "http://127.0.0.1:8001"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
    ],
)
def test_allowed_origins_are_spelt_as_chromium_spells_requests(given: str, origin: str) -> None:
    assert allowed_origin(given) == origin


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("ftp://x.example", "not an http(s) URL"),
        ("https://x.example/app", "no path, query or fragment"),
        ("https://x.example?v=1", "no path, query or fragment"),
        ("https://*.example.com", "without wildcards"),
        ("https://x.example:70000", "port"),
        ("cdn.example.com", "not an http(s) URL"),
    ],
)
def test_anything_but_an_origin_is_refused(given: str, problem: str) -> None:
    with pytest.raises(RagtuneError, match=re.escape(problem)):
        WebReader(render_allow=[given])


@pytest.mark.parametrize("given", ["ftp://x.example", "https://x.example/path", "https://u:p@x"])
def test_cli_refuses_a_malformed_render_allow(given: str, tmp_path: Path) -> None:
    result = run_cli(
        "ingest", "https://x.example/", "--render-allow", given, "--index", str(tmp_path / "i")
    )
    assert_one_line_error(result, "render allow-list")
    assert "u:p" not in result.stderr
    assert not (tmp_path / "i").exists()
