"""JavaScript rendering with the system's Chromium (installed by `make setup`)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import assert_one_line_error, run_cli
from tests.webserver import Reply, Site, serve

from ragtune import WebReader
from ragtune.web.render import needs_rendering

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

needs_chromium = pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="Chromium is not installed (make setup installs it as root)",
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
        "unknown render mode",
    )
