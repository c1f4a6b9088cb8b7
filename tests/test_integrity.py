"""An ingest killed with SIGKILL at any moment leaves an index that opens and
answers from what was committed; running it again finishes the job with every
chunk exactly once. A reader querying during an ingest sees whole documents."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from tests.helpers import run_cli

from ragtune import VectorStoreIndex
from ragtune.index.manifest import MANIFEST

COMMIT_EVERY = 4  # chunks per commit, so the shop's ~40 chunks take about ten commits


def ingest_command(shop_url: str, index_dir: Path, store: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ragtune",
        "ingest",
        f"{shop_url}/products",
        "--crawl",
        "--render",
        "never",
        "--index",
        str(index_dir),
        "--store",
        store,
        "--commit-every",
        str(COMMIT_EVERY),
    ]


def committed_chunks(index_dir: Path) -> int:
    if not (index_dir / MANIFEST).exists():
        return -1
    index = VectorStoreIndex.load(index_dir)
    try:
        return index.store.count()
    finally:
        index.close()


def chunks_by_document(index: VectorStoreIndex) -> dict[str, set[str]]:
    documents: dict[str, set[str]] = defaultdict(set)
    for chunk_id in index.store.chunk_ids():
        documents[chunk_id.rsplit(":", 1)[0]].add(chunk_id)
    return documents


def kill_when(command: list[str], ready: object, deadline_s: float = 120) -> bool:
    """Start ``command`` and SIGKILL it once ``ready()`` is true."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    started = time.monotonic()
    try:
        while process.poll() is None and time.monotonic() - started < deadline_s:
            if ready():  # type: ignore[operator]
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return True
            time.sleep(0.02)
        raise AssertionError(
            f"the ingest ended (exit {process.returncode}) before the kill point: "
            f"{process.stderr.read().decode()[-1000:] if process.stderr else ''}"
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def assert_whole_documents(index: VectorStoreIndex, expected: dict[str, set[str]]) -> None:
    """Every document in the index has exactly the chunks a clean ingest gives it."""
    for doc_id, chunk_ids in chunks_by_document(index).items():
        assert chunk_ids == expected[doc_id], f"document {doc_id} is partly committed"


def test_sigkill_at_several_points_then_rerun(
    shop_url: str, shop_index_dir: Path, tmp_path: Path, store_url: str
) -> None:
    # What a clean, uninterrupted crawl of the same shop indexes.
    expected = chunks_by_document(VectorStoreIndex.load(shop_index_dir))
    total = sum(len(ids) for ids in expected.values())
    assert total > 6 * COMMIT_EVERY

    index_dir = tmp_path / "killed"
    command = ingest_command(shop_url, index_dir, store_url)
    # 1: as soon as the index exists, before the first commit.
    assert kill_when(command, lambda: (index_dir / MANIFEST).exists())
    # 2: after a few commits; 3: later, after more; each kill resumes the last run.
    for threshold in (2 * COMMIT_EVERY, total // 2):
        assert kill_when(command, lambda t=threshold: committed_chunks(index_dir) >= t)
        index = VectorStoreIndex.load(index_dir)
        committed = index.store.count()
        assert committed >= threshold
        assert_whole_documents(index, expected)
        found = run_cli("retrieve", "price", "--index", str(index_dir), "--json")
        assert found.returncode == 0, found.stderr
        index.close()

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    index = VectorStoreIndex.load(index_dir)
    ids = index.store.chunk_ids()
    assert len(ids) == len(set(ids)) == total
    assert chunks_by_document(index) == expected
    answer = index.as_retriever(1).retrieve("What is the flavor of the dark energy potion?")
    assert "/products/dark-energy-potion" in answer[0].metadata["url"]


def test_reader_sees_whole_documents_during_an_ingest(
    shop_url: str, tmp_path: Path, store_url: str
) -> None:
    index_dir = tmp_path / "index"
    writer = subprocess.Popen(
        ingest_command(shop_url, index_dir, store_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[int] = []
    problems: list[str] = []
    stop = threading.Event()

    def read() -> None:
        index = None
        while not stop.is_set():
            if index is None:
                if not (index_dir / MANIFEST).exists():
                    time.sleep(0.05)
                    continue
                index = VectorStoreIndex.load(index_dir)
            try:
                snapshot = chunks_by_document(index)
                for doc_id, chunk_ids in snapshot.items():
                    numbers = sorted(int(i.rsplit(":", 1)[1]) for i in chunk_ids)
                    if numbers != list(range(len(numbers))):
                        problems.append(f"{doc_id} has chunks {numbers}")
                seen.append(sum(len(ids) for ids in snapshot.values()))
                index.as_retriever(3).retrieve("dark energy potion flavor")
            except Exception as error:  # any failure is a finding, reported below
                problems.append(repr(error))
        if index is not None:
            index.close()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        _, stderr = writer.communicate(timeout=300)
    finally:
        stop.set()
        reader.join(timeout=60)
    assert writer.returncode == 0, stderr
    assert not problems, problems[:5]
    # The reader watched the index grow commit by commit.
    assert len(set(seen)) >= 3, seen
    assert seen == sorted(seen)


def test_a_table_another_process_is_creating_reads_as_empty(tmp_path: Path) -> None:
    """LanceDB lists a table as soon as its directory exists, but opens it only once its
    first version is written; a reader polling beside an ingest in that moment must see an
    empty index, not a damaged one (it happened under load in CI). A table whose versions
    exist but cannot be read is still damaged."""
    from ragtune.errors import InvalidIndexError
    from ragtune.index.stores.lance import TABLE, LanceStore

    store_dir = tmp_path / "lancedb"
    (store_dir / f"{TABLE}.lance").mkdir(parents=True)  # created, first version not yet
    assert LanceStore(store_dir, dimensions=4).count() == 0

    versions = store_dir / f"{TABLE}.lance" / "_versions"
    versions.mkdir()
    (versions / "1.manifest").write_bytes(b"not a manifest")
    try:
        LanceStore(store_dir, dimensions=4).count()
    except InvalidIndexError as error:
        assert "damaged" in str(error)
    else:
        raise AssertionError("a table with an unreadable version read as fine")
