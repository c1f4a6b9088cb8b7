"""Hostile local files and folders (issue #11): each becomes one reported outcome.

Symbolic links out of a folder, link cycles, parser crashes, bombs, unreadable and
special files, pages beyond the HTML parser's limits, an index's damaged records,
embedder directories with pickled weights or damaged files, and reasons that name
the source once.
"""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
import subprocess
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docx
import pytest
from tests.helpers import assert_one_line_error, run_cli_in_process
from tests.pdfmaker import make_pdf, pdf_from_objects
from tests.webserver import Reply, Site, serve

from ragtune import VectorStoreIndex, WebReader, extract_html
from ragtune.assets import DEFAULT_EMBEDDER
from ragtune.documents import Document
from ragtune.errors import ModelNotFoundError, RagtuneError
from ragtune.extract import files, pdf, word
from ragtune.index.chunking import ChunkingConfig, MarkdownChunker
from ragtune.index.embedding import make_embedder
from ragtune.index.filters import parse_filter
from ragtune.ingest import IngestSettings, ingest, read_paths, recorded_sources
from ragtune.web.crawl import CrawlEvent


def read(root: Path, **settings: object) -> tuple[dict[str, CrawlEvent], list[Document]]:
    """What a folder ingest reads, by file name, without embedding anything."""
    events: list[CrawlEvent] = []
    documents = read_paths([root], IngestSettings(**settings), events.append)  # type: ignore[arg-type]
    return {e.url.rsplit("/", 1)[-1]: e for e in events}, documents


def texts(documents: list[Document]) -> str:
    return "\n".join(d.text for d in documents)


# --- Symbolic links -------------------------------------------------------------------


@pytest.fixture()
def linked_folder(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("The vault code is 4711.")
    (outside / "private").mkdir()
    (outside / "private" / "diary.md").write_text("Dear diary, the keeper sleeps at noon.")
    root = tmp_path / "kb"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "lamp.md").write_text("Trim the wick every evening at dusk.")
    (root / "hostname.md").symlink_to(outside / "secret.md")
    (root / "private").symlink_to(outside / "private")
    (root / "also-lamp.md").symlink_to(root / "notes" / "lamp.md")  # stays inside
    (root / "notes" / "loop").symlink_to(root)  # a cycle
    (root / "self.md").symlink_to(root / "self.md")  # a link to itself
    (root / "gone.md").symlink_to(tmp_path / "nowhere.md")
    return root


def test_symlinks_out_of_the_folder_are_skipped_and_reported(linked_folder: Path) -> None:
    events, documents = read(linked_folder)
    assert "4711" not in texts(documents) and "diary" not in texts(documents)
    for name in ("hostname.md", "private"):
        assert events[name].status == "skipped"
        assert "outside the folder" in events[name].reason
        assert "--follow-symlinks" in events[name].reason
    # The link is reported where it is, not where it leads.
    assert events["hostname.md"].url == (linked_folder / "hostname.md").as_uri()
    # Links that stay inside are fine, and the file they share is read once.
    assert texts(documents).count("Trim the wick") == 1
    assert events["lamp.md"].status == "fetched"
    assert (
        events["self.md"].status == "skipped" and "broken symbolic link" in events["self.md"].reason
    )
    assert events["gone.md"].status == "skipped"


def test_follow_symlinks_reads_outside_and_survives_cycles(linked_folder: Path) -> None:
    (linked_folder.parent / "outside" / "private" / "back").symlink_to(linked_folder)
    events, documents = read(linked_folder, follow_symlinks=True)
    assert "4711" in texts(documents) and "keeper sleeps" in texts(documents)
    assert texts(documents).count("Trim the wick") == 1
    assert events["secret.md"].status == "fetched"


# --- Parser failures ------------------------------------------------------------------


def flate_bomb_pdf() -> bytes:
    """A page whose content stream inflates past pypdf's 75 MB limit (LimitReachedError)."""
    packer = zlib.compressobj(9)
    stream = b"".join(packer.compress(bytes(1 << 20)) for _ in range(80)) + packer.flush()
    return pdf_from_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream)
            + stream
            + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


def self_referencing_pdf() -> bytes:
    """An xref stream that puts the catalog inside itself (pypdf: AssertionError)."""
    head = b"%PDF-1.5\n"
    entries = bytes([0, 0, 0, 2, 2, 0, 1, len(head), 0])
    xref = (
        b"2 0 obj\n<< /Type /XRef /Size 3 /W [1 1 1] /Root 1 0 R /Length %d >>\nstream\n"
        % len(entries)
        + entries
        + b"\nendstream\nendobj\n"
    )
    return head + xref + b"startxref\n%d\n%%%%EOF\n" % len(head)


def test_pdf_parser_crashes_are_one_reported_failure_each(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    root.mkdir()
    (root / "bomb.pdf").write_bytes(flate_bomb_pdf())
    (root / "selfref.pdf").write_bytes(self_referencing_pdf())
    (root / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "fine.pdf").write_bytes(make_pdf(["The lighthouse was built in 1841."]))
    events, documents = read(root)
    assert texts(documents) == "The lighthouse was built in 1841."
    assert events["bomb.pdf"].status == "failed"
    assert events["bomb.pdf"].reason.startswith("unreadable PDF (Limit reached")
    assert events["selfref.pdf"].reason == "unreadable PDF (AssertionError)"
    assert events["deep.json"].reason == "JSON nested too deeply to read"


def test_folder_ingest_with_skip_failures_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    root.mkdir()
    (root / "selfref.pdf").write_bytes(self_referencing_pdf())
    (root / "heading.md").write_text("# Relief keepers arrive by helicopter")
    result = ingest([str(root)], tmp_path / "idx", IngestSettings(skip_failures=True))
    assert result.report["counts"] == {"fetched": 1, "unchanged": 0, "skipped": 0, "failed": 1}
    # A document that is only a heading is indexed, and found.
    [best] = (
        VectorStoreIndex.load(tmp_path / "idx")
        .as_retriever(similarity_top_k=1)
        .retrieve("How do relief keepers arrive?")
    )
    assert "helicopter" in best.text


# --- Unreadable, special and oddly named files ----------------------------------------


def test_unreadable_and_special_files_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "kb"
    root.mkdir()
    (root / "fine.md").write_text("The supply boat comes on Thursdays.")
    (root / "locked.md").write_text("Only root may read this.")
    os.mkfifo(root / "pipe.md")  # reading it would wait for a writer forever
    real_open = os.open

    def open_as_nobody(path: str | Path, flags: int, *args: int, **kwargs: int) -> int:
        if Path(path).name == "locked.md":  # as a permission check would for another user
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_as_nobody)
    events, documents = read(root)
    assert texts(documents) == "The supply boat comes on Thursdays."
    assert events["locked.md"].status == "failed"
    assert events["locked.md"].reason == "cannot read the file (Permission denied)"
    assert (
        events["pipe.md"].status == "skipped" and "not a regular file" in events["pipe.md"].reason
    )
    with pytest.raises(RagtuneError, match=r"locked\.md: cannot read the file"):
        files.file_documents(root / "locked.md")
    with pytest.raises(RagtuneError, match="not a regular file"):
        files.file_documents(root / "pipe.md")


def test_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    root.mkdir()
    (root / os.fsdecode(b"caf\xe9.md")).write_text("The cafe by the lighthouse opens at dawn.")
    events, [document] = read(root)
    assert document.metadata["title"] == "caf\\xe9"
    assert document.metadata["path"].endswith("caf\\xe9.md")
    document.text.encode("utf-8")  # what the tokenizer and the store need
    assert list(events) == ["caf%E9.md"]


# --- Bombs and sizes ------------------------------------------------------------------


def docx_bomb(unpacked: int) -> bytes:
    """A valid DOCX whose document.xml is mostly blanks: ~150 KB that unpacks to ``unpacked``."""
    document = docx.Document()
    document.add_paragraph("Relief keepers arrive by helicopter.")
    plain = io.BytesIO()
    document.save(plain)
    bomb = io.BytesIO()
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "word/document.xml":
                head, tail = data.split(b"<w:body>")
                with out.open(info.filename, "w", force_zip64=True) as member:
                    member.write(head + b"<w:body>")
                    for _ in range(unpacked >> 20):
                        member.write(b" " * (1 << 20))
                    member.write(tail)
            else:
                out.writestr(info, data)
    return bomb.getvalue()


def test_docx_bomb_is_refused_before_parsing(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.docx"
    unpacked = 160 * 1024 * 1024  # the bomb of the issue: 1.5 MB to 1.5 GB, 3.1 GB of RSS
    bomb.write_bytes(docx_bomb(unpacked))
    assert bomb.stat().st_size < 1024 * 1024
    with pytest.raises(RagtuneError, match=r"bomb\.docx: too large \(unpacks to [\d,]+ bytes"):
        files.file_documents(bomb)
    assert unpacked > word.MAX_UNPACKED_BYTES


def test_file_over_the_size_limit_is_too_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 1000)
    (tmp_path / "big.txt").write_text("lighthouse " * 200)
    events, _ = read(tmp_path)
    assert events["big.txt"].reason == "too large (2,200 bytes; the limit is 1,000)"


def text_bomb_pdf(pages: int, lines: int) -> bytes:
    """Pages whose small FlateDecode streams each show ``lines`` lines of 50 characters."""
    line = b"(" + b"lighthouse " * 4 + b"keeper) Tj T* "
    stream = zlib.compress(b"BT /F1 12 Tf 12 TL 72 720 Td " + line * lines + b"ET", 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(pages)), pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i in range(pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objects.append(
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream)
            + stream
            + b"\nendstream"
        )
    return pdf_from_objects(objects)


def test_pdf_whose_text_passes_the_limit_is_too_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pdf, "MAX_PDF_TEXT_CHARS", 30_000)
    root = tmp_path / "kb"
    root.mkdir()
    (root / "bomb.pdf").write_bytes(text_bomb_pdf(pages=5, lines=400))  # 5 x 20,000 characters
    (root / "fine.md").write_text("The supply boat comes on Thursdays.")
    assert (root / "bomb.pdf").stat().st_size < 5000
    events, documents = read(root)
    assert texts(documents) == "The supply boat comes on Thursdays."
    assert events["bomb.pdf"].status == "failed"
    # Refused at the page that passes the limit, not after reading them all.
    assert re.fullmatch(
        r"too large \(its text passes [\d,]+ characters by page 2; the limit is 30,000\)",
        events["bomb.pdf"].reason,
    )


# --- Documents that have text are indexed ---------------------------------------------


def words(text: str) -> int:
    return len(text.split())


def test_a_document_that_is_only_headings_has_a_chunk() -> None:
    [chunk] = MarkdownChunker(words).chunk("# Lighthouse keeping\n\n## Night watch", title="t")
    assert chunk.text == "Lighthouse keeping\n\nNight watch"


def test_html_beyond_the_parsers_limits_keeps_all_its_text() -> None:
    deep = (
        "<html><head><title>Deep</title></head><body><p>Intro about the harbour.</p>"
        + "<div>" * 100_000
        + "The deep lamp room."
        + "</div>" * 100_000
        + "<p>After the abyss.</p><script>var hidden = 1;</script></body></html>"
    )
    page = extract_html(deep)
    assert page.title == "Deep"
    assert page.text == "Intro about the harbour.\n\nThe deep lamp room.\n\nAfter the abyss."
    # lxml stops at a single text of 10 MB; trafilatura then found nothing at all.
    huge = "<html><body><p>" + "keeper " * 1_600_000 + "</p></body></html>"
    assert len(extract_html(huge.encode()).text) == len("keeper " * 1_600_000) - 1


def test_chunks_stay_small_however_words_tokenize() -> None:
    # A WordPiece tokenizer counts any word over 100 characters as one token.
    def wordpiece(text: str) -> int:
        return sum(1 if len(word) > 100 else max(1, len(word) // 4) for word in text.split())

    chunker = MarkdownChunker(wordpiece, ChunkingConfig(chunk_size=64, chunk_overlap=8))
    chunks = chunker.chunk("x" * 200_000 + "\n\n" + "y" * 150 + " z" * 10)
    assert all(len(chunk.text) < 64 * 17 for chunk in chunks)  # 16 characters a token at most
    assert "".join(c.text for c in chunks).count("x") == 200_000


def test_splitting_a_long_sentence_does_not_recount_it_at_every_word() -> None:
    counted = 0

    def counting(text: str) -> int:
        nonlocal counted
        counted += len(text)
        return len(text.split())

    text = " ".join(f"word{i % 997}" for i in range(20_000))  # no sentence ends
    chunks = MarkdownChunker(counting, ChunkingConfig(chunk_size=64, chunk_overlap=8)).chunk(text)
    assert sum(words(c.text) for c in chunks) >= 20_000
    assert counted < 6 * len(text)  # recounting the growing run was ~60x


# --- An index's own records -----------------------------------------------------------


@pytest.fixture(scope="module")
def recorded_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of one file, with its sources.json."""
    root = tmp_path_factory.mktemp("recorded")
    (root / "kites.md").write_text("# Kites\n\nThe griffin kite costs 89 dollars.\n")
    ingest([str(root / "kites.md")], root / "idx", IngestSettings())
    return root / "idx"


@pytest.fixture()
def index_copy(recorded_index: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(recorded_index, tmp_path / "idx"))


@pytest.fixture()
def lamps(tmp_path: Path) -> Path:
    path = tmp_path / "lamps.md"
    path.write_text("# Lamps\n\nThe lighthouse lamp burns for 40 hours.\n")
    return path


@pytest.mark.parametrize(
    "damage",
    [b"[" * 100_000, b"{broken", b'{"format": "ragtune-sources", "sources": 3}', b"\xff\xfe"],
)
def test_ingest_refuses_a_damaged_sources_record_and_keeps_it(
    damage: bytes,
    index_copy: Path,
    lamps: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = index_copy / "sources.json"
    record.write_bytes(damage)
    result = run_cli_in_process(
        capsys, monkeypatch, "ingest", str(lamps), "--index", str(index_copy)
    )
    assert_one_line_error(result, f"{record} is damaged", "repair it, or delete it")
    assert result.returncode == 1
    assert record.read_bytes() == damage  # rewriting it would lose every earlier source
    assert VectorStoreIndex.load(index_copy).stats()["documents"] == 1


def test_records_nested_too_deeply_are_one_line(
    index_copy: Path,
    lamps: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (index_copy / "sources.json").write_text("[" * 100_000)
    result = run_cli_in_process(capsys, monkeypatch, "sync", "--index", str(index_copy))
    assert_one_line_error(result, "sources.json is damaged (nested too deeply)")
    (index_copy / "ragtune.json").write_text("[" * 100_000)
    for command in (["sync"], ["ingest", str(lamps)], ["retrieve", "kites?"]):
        result = run_cli_in_process(capsys, monkeypatch, *command, "--index", str(index_copy))
        assert_one_line_error(result, "ragtune.json is damaged (nested too deeply)")


def test_an_index_without_sources_record_takes_an_ingest(index_copy: Path, lamps: Path) -> None:
    (index_copy / "sources.json").unlink()  # as an index built through the Python API has
    ingest([str(lamps)], index_copy, IngestSettings())
    assert [r.source for r in recorded_sources(index_copy)] == [str(lamps.resolve())]


def test_a_filter_value_nested_too_deeply_is_a_string() -> None:
    deep = "[" * 100_000
    assert parse_filter(f"tag={deep}").value == deep


# --- Model directories ----------------------------------------------------------------


class Plant:
    """Unpickled, this opens ``marker`` for writing, creating it: what a shell command could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def embedder_without_weights(where: Path) -> Path:
    """A copy of the bundled MiniLM but for its weights."""
    ignore = shutil.ignore_patterns("*.safetensors")
    return Path(shutil.copytree(DEFAULT_EMBEDDER.require(), where, ignore=ignore))


def ingest_with_embedder(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    source: Path,
    index_dir: Path,
    model: Path,
    backend: str,
) -> subprocess.CompletedProcess[str]:
    return run_cli_in_process(
        capsys, monkeypatch, "ingest", str(source), "--index", str(index_dir),
        "--embed-model", str(model), "--embed-backend", backend,
    )  # fmt: skip


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_an_embedder_with_pickled_weights_is_refused(
    backend: str,
    tmp_path: Path,
    lamps: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    model = embedder_without_weights(tmp_path / "embedder")
    marker = tmp_path / "planted"
    torch.save(Plant(marker), model / "pytorch_model.bin")
    index_dir = tmp_path / "idx"
    result = ingest_with_embedder(capsys, monkeypatch, lamps, index_dir, model, backend)
    assert_one_line_error(result, str(model), "pytorch_model.bin", "safetensors only")
    assert result.returncode == 1
    assert not marker.exists() and not index_dir.exists()
    (model / "pytorch_model.bin").unlink()
    with pytest.raises(ModelNotFoundError, match="has no weights"):
        make_embedder(model)


@pytest.mark.parametrize(
    "damaged", ["config.json", "sentence_bert_config.json", "modules.json", "tokenizer.json"]
)
@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_an_embedder_with_a_damaged_file_is_one_line(
    damaged: str,
    backend: str,
    tmp_path: Path,
    lamps: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = embedder_without_weights(tmp_path / "embedder")
    (model / "model.safetensors").symlink_to(DEFAULT_EMBEDDER.require() / "model.safetensors")
    (model / damaged).write_text("[" * 100_000)
    result = ingest_with_embedder(capsys, monkeypatch, lamps, tmp_path / "idx", model, backend)
    assert_one_line_error(result, str(model))


# --- Reasons name the source once -----------------------------------------------------


@pytest.fixture()
def site() -> Iterator[Site]:
    with serve(Site()) as running:
        running.routes["/broken.pdf"] = Reply(body=b"%PDF-1.4 junk", content_type="application/pdf")
        running.routes["/empty.html"] = Reply(body=b"<html><body> </body></html>")
        yield running


def test_reasons_do_not_repeat_the_url(site: Site, tmp_path: Path) -> None:
    reader = WebReader(retries=0)
    reader.load_data([site.base + "/broken.pdf", site.base + "/empty.html"])
    reasons = {e.url.rsplit("/", 1)[-1]: e.reason for e in reader.report.events}
    assert reasons["broken.pdf"].startswith("unreadable PDF")
    assert reasons["empty.html"] == "no readable text"
    assert str(reader.failures[0]).count(site.base) == 1  # the error itself names it once
    root = tmp_path / "kb"
    root.mkdir()
    (root / "empty.html").write_text("<html><body> </body></html>")
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 junk")
    events, _ = read(root)
    assert events["empty.html"].reason == "no readable text"
    assert events["broken.pdf"].reason.startswith("unreadable PDF")
