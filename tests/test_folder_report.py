"""What an ingest leaves out is named, not silently dropped.

A folder's files of a type ragtune does not read (images, binaries, spreadsheets, a
file with no suffix) are listed as skipped with the reason ``unsupported type``, in
the report the Python API returns, in ``ingest-report.json`` and on the command
line; hidden files and folders stay out unsaid. A broken link a crawl finds is named
with its status in the same places.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import run_cli_in_process
from tests.webserver import Site, serve

from ragtune.errors import RagtuneError
from ragtune.ingest import REPORT_FILE, IngestSettings, ingest
from ragtune.sync import sync

UNSUPPORTED = {
    "photo.png": (b"\x89PNG\r\n\x1a\n", ".png"),
    "firmware.bin": (b"\x00\x01\x02\xff", ".bin"),
    "prices.xlsx": (b"PK\x03\x04", ".xlsx"),
    "guides/setup.exe": (b"MZ\x90\x00", ".exe"),
    "LICENCE": (b"\x7fELF\x02\x01", "(no suffix)"),
}


def make_folder(root: Path) -> Path:
    (root / "guides").mkdir(parents=True)
    (root / "lamp.md").write_text("# Lamp\n\nTrim the wick every evening at dusk.")
    (root / "guides" / "boat.txt").write_text("The supply boat comes on Thursdays.")
    for name, (data, _) in UNSUPPORTED.items():
        (root / name).write_bytes(data)
    (root / ".hidden").mkdir()
    (root / ".hidden" / "notes.md").write_text("# Hidden\n\nNot read.")
    (root / ".thumb.png").write_bytes(b"\x89PNG")
    return root


def report_urls(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["url"]: entry for entry in report["urls"]}


def test_unsupported_files_are_listed_as_skipped(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "kb")
    result = ingest([str(root)], tmp_path / "idx", IngestSettings())
    assert result.documents == 2
    assert result.report["counts"] == {"fetched": 2, "unchanged": 0, "skipped": 5, "failed": 0}
    assert result.report["skipped"] == {"type": 5}
    listed = report_urls(result.report)
    for name, (_, suffix) in UNSUPPORTED.items():
        entry = listed[(root / name).resolve().as_uri()]
        assert entry["status"] == "skipped"
        assert str(entry["reason"]).startswith(f"unsupported type {suffix};")
    # Hidden files and folders are left out without a word, as version control's are.
    assert not [url for url in listed if "/." in url]
    # The file on disk says the same as the result.
    on_disk = json.loads((tmp_path / "idx" / REPORT_FILE).read_text())
    assert report_urls(on_disk) == listed


def test_globs_decide_before_the_type_is_reported(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "kb")
    result = ingest([str(root)], tmp_path / "idx", IngestSettings(include=["*.md", "*.png"]))
    skipped = [e["url"] for e in result.report["urls"] if e["status"] == "skipped"]
    assert skipped == [(root / "photo.png").resolve().as_uri()]


def test_a_folder_of_nothing_readable_names_a_file_it_skipped(tmp_path: Path) -> None:
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "photo.png").write_bytes(b"\x89PNG")
    with pytest.raises(
        RagtuneError, match=r"nothing to index: .*photo\.png: unsupported type \.png"
    ):
        ingest([str(tmp_path / "kb")], tmp_path / "idx", IngestSettings())


def test_sync_reports_them_skipped_and_keeps_the_index(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "kb")
    ingest([str(root)], tmp_path / "idx", IngestSettings())
    result = sync(tmp_path / "idx")
    actions = {url.url: url.action for url in result.urls}
    assert actions[(root / "photo.png").resolve().as_uri()] == "skipped"
    assert actions[(root / "lamp.md").resolve().as_uri()] == "unchanged"
    assert result.skipped == 5 and result.removed == 0 and result.documents == 2


def test_cli_names_each_skipped_file_and_where_the_report_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_folder(tmp_path / "kb")
    index = tmp_path / "idx"
    result = run_cli_in_process(capsys, monkeypatch, "ingest", str(root), "--index", str(index))
    assert result.returncode == 0, result.stderr
    assert "5 skipped (type 5)" in result.stdout
    assert f"Report: {index / REPORT_FILE}" in result.stdout
    photo = (root / "photo.png").resolve().as_uri()
    assert f"skipped {photo}: unsupported type .png" in result.stderr


def test_cli_lists_the_first_skipped_files_and_counts_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder of many images must not bury the summary: 20 named, the rest counted."""
    from ragtune.cli.sources import LISTED_TROUBLES

    root = make_folder(tmp_path / "kb")
    for n in range(30):
        (root / f"scan-{n:02d}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    index = tmp_path / "idx"
    result = run_cli_in_process(capsys, monkeypatch, "ingest", str(root), "--index", str(index))
    assert result.returncode == 0, result.stderr
    assert "35 skipped (type 35)" in result.stdout
    named = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]
    assert len(named) == LISTED_TROUBLES
    assert f"... and {35 - LISTED_TROUBLES} more skipped or failed, all listed in" in result.stderr
    report = json.loads((index / REPORT_FILE).read_text())
    assert sum(1 for url in report["urls"] if url["status"] == "skipped") == 35


# --- broken links found while crawling ---------------------------------------------------


@pytest.fixture()
def site_with_a_dead_link() -> Iterator[Site]:
    site = Site()
    site.page(
        "/index.html",
        "<html><body><article><h1>Home</h1><p>The keeper lights the lamp at dusk.</p>"
        '<a href="/gone.html">a dead link</a> <a href="/ok.html">a live one</a>'
        "</article></body></html>",
    )
    site.page(
        "/ok.html",
        "<html><body><article><h1>Ok</h1><p>The lamp burns whale oil.</p></article></body></html>",
    )
    with serve(site) as served:
        yield served


def test_a_broken_link_is_named_with_its_status(
    site_with_a_dead_link: Site,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, index = site_with_a_dead_link.base, tmp_path / "idx"
    result = run_cli_in_process(
        capsys, monkeypatch, "ingest", f"{base}/index.html", "--crawl", "--index", str(index)
    )
    assert result.returncode == 0, result.stderr  # a link found, not a source named
    assert "2 fetched" in result.stdout and "1 failed" in result.stdout
    assert f"Report: {index / REPORT_FILE}" in result.stdout
    assert f"failed {base}/gone.html: HTTP 404 Not Found" in result.stderr
    report = json.loads((index / REPORT_FILE).read_text())
    gone = report_urls(report)[f"{base}/gone.html"]
    assert (gone["status"], gone["reason"], gone["depth"]) == ("failed", "HTTP 404 Not Found", 1)
