"""Content types over HTTP and local files and folders."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import docx
import pytest
from tests.helpers import assert_one_line_error, run_cli
from tests.pdfmaker import make_pdf
from tests.webserver import Reply, Site, serve

from ragtune import VectorStoreIndex, WebReader
from ragtune.extract.files import Skipped, read_folder
from ragtune.ingest import IngestSettings, ingest

PDF = make_pdf(["The lighthouse was built in 1841.", "Its lamp burned whale oil until 1902."])


@pytest.fixture()
def site() -> Iterator[Site]:
    with serve(Site()) as running:
        running.routes["/report.pdf"] = Reply(body=PDF, content_type="application/pdf")
        running.routes["/data.json"] = Reply(
            body=json.dumps({"keeper": "Agnes Thornbury", "since": 1919}).encode(),
            content_type="application/json",
        )
        running.routes["/notes.md"] = Reply(
            body=b"# Notes\n\nThe fog horn sounds every 30 seconds.", content_type="text/markdown"
        )
        running.routes["/broken.json"] = Reply(body=b"{not json", content_type="application/json")
        running.routes["/broken.pdf"] = Reply(
            body=b"%PDF-1.4 garbage", content_type="application/pdf"
        )
        running.routes["/archive.zip"] = Reply(body=b"PK\x03\x04", content_type="application/zip")
        yield running


def test_pdf_pages_become_documents_with_page_numbers(site: Site) -> None:
    documents = WebReader().load_data([site.base + "/report.pdf"])
    assert [(d.metadata["page"], d.text) for d in documents] == [
        (1, "The lighthouse was built in 1841."),
        (2, "Its lamp burned whale oil until 1902."),
    ]
    assert len({d.id_ for d in documents}) == 2
    assert all(d.metadata["url"] == site.base + "/report.pdf" for d in documents)


def test_json_and_markdown_are_kept_as_they_are(site: Site) -> None:
    documents = WebReader().load_data([site.base + "/data.json", site.base + "/notes.md"])
    by_url = {d.metadata["url"].rsplit("/", 1)[-1]: d for d in documents}  # fetched concurrently
    data, notes = by_url["data.json"], by_url["notes.md"]
    assert json.loads(data.text) == {"keeper": "Agnes Thornbury", "since": 1919}
    assert notes.text == "# Notes\n\nThe fog horn sounds every 30 seconds."


def test_unreadable_types_are_skipped_or_failed_with_reasons(site: Site) -> None:
    reader = WebReader(retries=0)
    reader.load_data([site.base + p for p in ("/broken.json", "/broken.pdf", "/archive.zip")])
    reasons = {e.url.rsplit("/", 1)[-1]: (e.status, e.reason) for e in reader.report.events}
    assert reasons["archive.zip"] == ("skipped", "unsupported content type application/zip")
    assert reader.report.skipped_by_kind() == {"type": 1}
    assert reasons["broken.json"][0] == "failed" and "invalid JSON" in reasons["broken.json"][1]
    assert reasons["broken.pdf"][0] == "failed" and "PDF" in reasons["broken.pdf"][1]


def make_folder(root: Path) -> Path:
    (root / "guides").mkdir(parents=True)
    (root / "guides" / "lamp.md").write_text("# Lamp\n\nTrim the wick every evening at dusk.")
    (root / "notes.txt").write_text("The supply boat comes on Thursdays.")
    (root / "page.html").write_text(
        "<html><body><article><h1>Keeper</h1><p>The keeper logs the weather at noon.</p></article></body></html>"
    )
    (root / "history.pdf").write_bytes(PDF)
    document = docx.Document()
    document.add_paragraph("Relief keepers arrive by helicopter since 1980.")
    document.save(str(root / "relief.docx"))
    (root / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD.md").write_text("hidden")
    (root / "draft.md").write_text("# Draft\n\nNot ready.")
    return root


def test_folder_is_read_recursively_with_globs(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "kb")
    found = {
        path.relative_to(root).as_posix(): result
        for path, result in read_folder(root, exclude=["draft*"])
    }
    unsupported = "unsupported type .jpg; ragtune reads HTML, Markdown, text, JSON, PDF and DOCX"
    assert found.pop("photo.jpg") == Skipped(unsupported, unsupported=True)  # listed, not read
    assert set(found) == {"guides/lamp.md", "notes.txt", "page.html", "history.pdf", "relief.docx"}
    assert [d.metadata["page"] for d in found["history.pdf"]] == [1, 2]  # type: ignore[union-attr]
    only_md = {p.name for p, _ in read_folder(root, include=["*.md"])}
    assert only_md == {"lamp.md", "draft.md"}


def test_ingest_a_folder_then_ask_about_it(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "kb")
    result = ingest([str(root)], tmp_path / "idx", IngestSettings(exclude=["draft*"]))
    assert result.report["counts"]["fetched"] == 5
    index = VectorStoreIndex.load(tmp_path / "idx")
    [best] = index.as_retriever(similarity_top_k=1).retrieve("How do relief keepers arrive?")
    assert "helicopter" in best.text
    assert best.metadata["path"] == str((root / "relief.docx").resolve())


def test_cli_ingest_folder_and_bad_paths(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "kb")
    ok = run_cli("ingest", str(root), "--index", str(tmp_path / "idx"))
    assert ok.returncode == 0, ok.stderr
    assert "6 fetched" in ok.stdout
    assert_one_line_error(
        run_cli("ingest", str(tmp_path / "missing"), "--index", str(tmp_path / "i2")),
        "no such file",
    )
    assert not (tmp_path / "i2").exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (bad / "fine.md").write_text("The fog horn is tested on Mondays.")
    # A file named on the command line must be readable; one found inside a folder
    # is like a page found by crawling: reported, not fatal.
    assert_one_line_error(
        run_cli("ingest", str(bad / "broken.pdf"), "--index", str(tmp_path / "i3")),
        "unreadable PDF",
    )
    assert not (tmp_path / "i3").exists()
    folder = run_cli("ingest", str(bad), "--index", str(tmp_path / "i3"))
    assert folder.returncode == 0, folder.stderr
    assert "1 fetched" in folder.stdout and "1 failed" in folder.stdout
    assert "broken.pdf: unreadable PDF" in folder.stderr
