"""Unchanged files cost almost nothing: ``sync`` and a second ``ingest`` of a folder
skip every file whose size and SHA-256 are those recorded when it was indexed
(``files.json``), without extracting it; anything else is read again.

Whether a file was extracted is told by its outcome's reason ("same content as when
indexed" is only given to a file that was not read into Documents) and by the index.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.helpers import run_cli

from ragtune import VectorStoreIndex
from ragtune.index.manifest import FILE_STATES, read_file_states
from ragtune.ingest import IngestSettings, ingest
from ragtune.sync import SyncResult, sync

NOT_READ = "same content as when indexed"
NOTES = {
    "anchors.md": "# Anchors\n\nThe bower anchor of the brig Tern weighs nine hundredweight.\n",
    "bells.md": "# Bells\n\nThe fog bell at Skerry Point rings twice every half minute.\n",
    "charts.html": "<html><body><article><h1>Charts</h1><p>The Admiralty chart of the "
    "Sound was surveyed in 1832.</p></article></body></html>",
}


def make_folder(root: Path) -> Path:
    root.mkdir()
    for name, text in NOTES.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def reasons(result: SyncResult) -> dict[str, tuple[str, str]]:
    return {Path(u.url).name: (u.action, u.reason) for u in result.urls}


def texts(index_dir: Path) -> str:
    index = VectorStoreIndex.load(index_dir)
    return " ".join(text for *_, text in index.store.chunk_texts())


def test_sync_of_an_unchanged_folder_reads_no_file(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "notes")
    index_dir = tmp_path / "idx"
    ingest([str(folder)], index_dir, IngestSettings())
    states = read_file_states(index_dir)
    assert len(states) == 3 and all(len(s.documents) == 1 for s in states.values())
    result = sync(index_dir)
    assert reasons(result) == {name: ("unchanged", NOT_READ) for name in NOTES}
    assert (result.chunks_written, result.documents) == (0, 3)


def test_a_touched_file_is_hashed_and_left_alone(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "notes")
    index_dir = tmp_path / "idx"
    ingest([str(folder)], index_dir, IngestSettings())
    later = (folder / "bells.md").stat().st_mtime_ns + 5_000_000_000
    os.utime(folder / "bells.md", ns=(later, later))
    assert reasons(sync(index_dir))["bells.md"] == ("unchanged", NOT_READ)
    (state,) = [s for url, s in read_file_states(index_dir).items() if url.endswith("bells.md")]
    assert state.mtime_ns == later  # recorded as it now is


def test_new_content_of_the_same_size_and_time_is_read(tmp_path: Path) -> None:
    # cp -p, rsync -t and tar keep a modification time: only the hash can tell.
    folder = make_folder(tmp_path / "notes")
    index_dir = tmp_path / "idx"
    ingest([str(folder)], index_dir, IngestSettings())
    bells = folder / "bells.md"
    before = bells.stat()
    new_text = NOTES["bells.md"].replace("twice", "seven")  # the same number of bytes
    assert len(new_text) == len(NOTES["bells.md"])
    bells.write_text(new_text, encoding="utf-8")
    os.utime(bells, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert bells.stat().st_size == before.st_size

    result = sync(index_dir)
    assert reasons(result)["bells.md"][0] == "changed"
    assert reasons(result)["anchors.md"] == ("unchanged", NOT_READ)
    assert "seven every half minute" in texts(index_dir)
    assert reasons(sync(index_dir))["bells.md"] == ("unchanged", NOT_READ)


def test_a_record_the_index_does_not_match_is_not_trusted(tmp_path: Path) -> None:
    # The file is as recorded, but its document left the index (through the API):
    # the file is read again and its document comes back.
    folder = make_folder(tmp_path / "notes")
    index_dir = tmp_path / "idx"
    ingest([str(folder)], index_dir, IngestSettings())
    index = VectorStoreIndex.load(index_dir)
    (doc_id,) = [i for i, (url, _) in index.store.document_hashes().items() if "anchors" in url]
    index.delete_documents([doc_id])
    result = sync(index_dir)
    assert reasons(result)["anchors.md"] == ("added", "")
    assert result.documents == 3 and "bower anchor" in texts(index_dir)


def test_a_damaged_record_costs_a_reread_not_an_error(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "notes")
    index_dir = tmp_path / "idx"
    ingest([str(folder)], index_dir, IngestSettings())
    (index_dir / FILE_STATES).write_text('{"format": "ragtune-files", "files": [1, 2')
    result = sync(index_dir)
    assert {action for action, _ in reasons(result).values()} == {"unchanged"}
    assert not any(reason == NOT_READ for _, reason in reasons(result).values())
    assert len(json.loads((index_dir / FILE_STATES).read_text())["files"]) == 3
    assert {r for _, r in reasons(sync(index_dir)).values()} == {NOT_READ}


def test_a_dry_run_records_nothing(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "notes")
    index_dir = tmp_path / "idx"
    ingest([str(folder)], index_dir, IngestSettings())
    (folder / "bells.md").write_text("# Bells\n\nA new bell.\n", encoding="utf-8")
    recorded = (index_dir / FILE_STATES).read_bytes()
    assert reasons(sync(index_dir, dry_run=True))["bells.md"][0] == "changed"
    assert (index_dir / FILE_STATES).read_bytes() == recorded


def test_a_second_ingest_of_a_folder_reads_only_what_changed(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "notes")
    index_dir = tmp_path / "idx"
    first = run_cli("ingest", str(folder), "--index", str(index_dir))
    assert first.returncode == 0, first.stderr
    (folder / "dories.md").write_text("# Dories\n\nA banks dory is built of pine.\n")
    second = run_cli("ingest", str(folder), "--index", str(index_dir))
    assert second.returncode == 0, second.stderr
    assert "Indexed 1 document into" in second.stdout
    assert "1 fetched, 3 unchanged, 0 skipped, 0 failed" in second.stdout
    report = json.loads((index_dir / "ingest-report.json").read_text())
    assert sorted(u["reason"] for u in report["urls"]) == ["", NOT_READ, NOT_READ, NOT_READ]
