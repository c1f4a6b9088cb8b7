"""Ingest on Ray (``--engine ray``): the same index as a local ingest, and the faults a
cluster meets. The cluster is real: a head and two worker processes on this machine
(``ray.cluster_utils.Cluster``), started once for the module (about 20-25 s here).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from importlib.util import find_spec
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
from tests.helpers import assert_one_line_error, one_line_message, run_cli
from tests.postgres_server import PG_BIN, missing_reason, start_postgres
from tests.webserver import Reply, Request, Site, serve

from ragtune.errors import RagtuneError, StoreConnectionError
from ragtune.index.vector_index import VectorStoreIndex
from ragtune.ingest import IngestSettings, ingest
from ragtune.web.reader import WebReader

needs_ray = pytest.mark.skipif(
    find_spec("ray") is None, reason="the ray extra is not installed: pip install 'ragtune[ray]'"
)
# The fault tests take 30-90 s each on a loaded 2-core machine.
slow = pytest.mark.slow

TOPICS = ["lighthouse", "glacier", "orchard", "foundry", "observatory", "harbour", "mill"]


def write_corpus(folder: Path, documents: int, first: int = 0) -> Path:
    """Markdown notes, some long enough for several chunks, all with distinct facts
    (numbered from ``first``: two corpora with different numbers share no text)."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(first, first + documents):
        topic = TOPICS[n % len(TOPICS)]
        sections = 1 + n % 4
        body = "\n\n".join(
            f"## Section {s} of the {topic} {n}\n\n"
            + " ".join(
                f"The {topic} number {n} keeps record {s}.{k}: it opened in {1800 + n + k} "
                f"and holds {n * 7 + s * 3 + k} items of kind {k}."
                for k in range(12)
            )
            for s in range(sections)
        )
        (folder / f"note-{n:04d}.md").write_text(f"# The {topic} {n}\n\n{body}\n")
    return folder


def index_contents(index_dir: Path) -> dict[str, tuple[str, str, np.ndarray]]:
    """Every chunk of an index: id -> (document id, text, vector)."""
    index = VectorStoreIndex.load(index_dir)
    try:
        store = index.store
        probe = np.ones(index.manifest.dimensions, dtype=np.float32)
        count = store.count()
        hits = store.search_vector(probe / np.linalg.norm(probe), count) if count else []
        rows = {hit.row["id"]: hit.row for hit in hits}
        assert len(rows) == count, "a chunk id is in the index twice"
        return {
            chunk_id: (row["doc_id"], row["text"], np.asarray(row["vector"], dtype=np.float32))
            for chunk_id, row in rows.items()
        }
    finally:
        index.close()


def assert_same_index(
    expected: dict[str, tuple[str, str, np.ndarray]],
    actual: dict[str, tuple[str, str, np.ndarray]],
) -> None:
    assert sorted(actual) == sorted(expected)
    for chunk_id, (doc_id, text, vector) in expected.items():
        assert actual[chunk_id][0] == doc_id
        assert actual[chunk_id][1] == text
        np.testing.assert_allclose(actual[chunk_id][2], vector, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A head (no CPUs: it only coordinates) and two one-CPU worker nodes, each its own
    set of processes on this machine."""
    if find_spec("ray") is None:
        pytest.skip("the ray extra is not installed: pip install 'ragtune[ray]'")
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    from ray.cluster_utils import Cluster

    store = 100 * 1024 * 1024
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "object_store_memory": store},
    )
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, object_store_memory=store)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough work (about 300 chunks) that a fault lands while the job runs."""
    return write_corpus(tmp_path_factory.mktemp("corpus") / "notes", 120)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("small") / "notes", 24, first=500)


@pytest.fixture(scope="module")
def local_index(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus ingested the usual way, in this process: the reference."""
    directory = tmp_path_factory.mktemp("local") / "index"
    ingest([str(corpus)], directory, IngestSettings())
    return directory


@pytest.fixture(scope="module")
def local_contents(local_index: Path) -> dict[str, tuple[str, str, np.ndarray]]:
    return index_contents(local_index)


# --- The same index ---------------------------------------------------------------------


@needs_ray
def test_ray_ingest_equals_the_local_one(
    ray_cluster: Any, small_corpus: Path, shop_url: str, tmp_path: Path
) -> None:
    """Files and a crawled site: the same documents, chunk ids, texts, and vectors
    within 1e-5, and the same report."""
    sources = [str(small_corpus), f"{shop_url}/products"]
    settings = {"crawl": True, "commit_every": 16}
    local = ingest(sources, tmp_path / "local", IngestSettings(**settings))  # type: ignore[arg-type]
    progress: list[tuple[int, int]] = []
    distributed = ingest(
        sources,
        tmp_path / "ray",
        IngestSettings(engine="ray", ray_address=ray_cluster.address, **settings),  # type: ignore[arg-type]
        on_embed=lambda done, total: progress.append((done, total)),
    )
    assert distributed.documents == local.documents > 24
    assert distributed.stats["chunks"] == local.stats["chunks"]
    assert distributed.insert == local.insert
    assert distributed.report["counts"] == local.report["counts"]
    assert progress and progress[-1][0] == progress[-1][1] == local.insert.chunks
    assert_same_index(index_contents(tmp_path / "local"), index_contents(tmp_path / "ray"))

    # Ingested again unchanged: nothing to embed, nothing rewritten.
    again = ingest(
        sources,
        tmp_path / "ray",
        IngestSettings(engine="ray", ray_address=ray_cluster.address, **settings),  # type: ignore[arg-type]
    )
    assert again.insert.chunks == 0
    assert again.stats == distributed.stats


@needs_ray
def test_crawled_pages_are_extracted_on_the_cluster_with_bounded_pages_in_flight(
    ray_cluster: Any,
) -> None:
    """The Ray engine's page extractor gives each page what local extraction gives,
    passes other events through, reports a page that cannot be read as its error, and
    never takes more pages from the crawl than it has room for."""
    from ragtune.scale.ray_ingest import PAGES_IN_FLIGHT_PER_CPU, RayEngine
    from ragtune.web.crawl import CrawlEvent
    from ragtune.web.extraction_pool import convert
    from ragtune.web.fetch import FetchedPage

    def page(n: int) -> FetchedPage:
        html = f"<html><head><title>Lamp {n}</title></head><body><main><h1>Lamp {n}</h1>"
        html += f"<p>The lamp number {n} burns for {n + 10} hours on one filling.</p>"
        html += "</main></body></html>"
        url = f"http://127.0.0.1:9/lamps/{n}"
        return FetchedPage(url, url, 200, "text/html", html.encode(), "utf-8")

    broken_url = "http://127.0.0.1:9/broken.pdf"
    broken = FetchedPage(broken_url, broken_url, 200, "application/pdf", b"%PDF-1.4 no", None)
    events = [CrawlEvent(p.url, "fetched", page=p) for p in map(page, range(40))]
    events.insert(5, CrawlEvent("http://127.0.0.1:9/robots-says-no", "skipped", "robots.txt"))
    events.append(CrawlEvent(broken_url, "fetched", page=broken))
    taken = 0
    taken_before_first: list[int] = []

    def crawl() -> Iterator[CrawlEvent]:
        nonlocal taken
        for event in events:
            taken += 1
            yield event

    engine = RayEngine.connect(ray_cluster.address)
    try:
        results = {}
        for event, outcome in engine.extract_pages(crawl()):
            taken_before_first.append(taken)
            results[event.url] = outcome
        most = engine.resources()[0] * PAGES_IN_FLIGHT_PER_CPU
    finally:
        engine.close()
    assert sorted(results) == sorted(e.url for e in events)
    assert results["http://127.0.0.1:9/robots-says-no"] == []
    assert isinstance(results[broken_url], RagtuneError)
    assert str(results[broken_url]) == convert(broken)
    for n in range(40):
        (document,) = results[f"http://127.0.0.1:9/lamps/{n}"]  # type: ignore[misc]
        (expected,) = convert(page(n))  # type: ignore[misc]
        assert document.text == expected.text
        # the same metadata, but for the moment each copy was extracted
        assert {**document.metadata, "fetched_at": ""} == {**expected.metadata, "fetched_at": ""}
    # back-pressure: the crawl is never more than `most` fetched pages ahead
    # (plus the pass-through event, which is answered at once)
    assert taken_before_first[0] <= most + 2


# --- Fetching: the frontier sharded by host --------------------------------------------


def _two_host_site(pages: int) -> tuple[Site, Counter[str]]:
    """Each host's home page links to ``pages`` pages; every answer takes 0.1 s. The
    counter keeps, per Host header, the most requests the server had at once."""
    site = Site()
    in_flight: Counter[str] = Counter()
    most: Counter[str] = Counter()
    lock = threading.Lock()

    def answer(request: Request) -> Reply:
        host = request.headers["host"]
        with lock:
            in_flight[host] += 1
            most[host] = max(most[host], in_flight[host])
        time.sleep(0.1)
        links = "".join(f'<a href="/p{n}">page {n}</a> ' for n in range(pages))
        topic = TOPICS[len(request.path) % len(TOPICS)]
        text = f"<p>The {topic} page {request.path} on {host}, one of many.</p>"
        body = f"<html><title>{request.path}</title><body>{text}{links}</body></html>"
        with lock:  # before the reply is written: no next request can be on its way yet
            in_flight[host] -= 1
        return Reply(body=body.encode())

    site.routes["/robots.txt"] = Reply(404, b"")
    site.routes["/sitemap.xml"] = Reply(404, b"")
    site.routes["/*"] = answer
    return site, most


def _kept_visit_pools(engine: Any, pools: list[Any]) -> Any:
    """The engine's visit pool factory, keeping each pool it makes in ``pools``."""

    def shards(settings: Any, options: Any) -> Any:
        pools.append(engine.visit_pool(settings, options))
        return pools[-1]

    return shards


@needs_ray
def test_fetch_shards_own_their_hosts_and_per_host_limits_hold_across_them(
    ray_cluster: Any,
) -> None:
    """Two hosts, two fetch shards: each host fetched by one shard only, so one request
    at a time per host although the crawl runs 16 at once; with a looser limit the
    server does see a host's requests overlap (the check can fail)."""
    from ragtune.scale.ray_ingest import RayEngine

    engine = RayEngine.connect(ray_cluster.address)
    pools: list[Any] = []
    shards = _kept_visit_pools(engine, pools)

    try:
        site, most = _two_host_site(pages=12)
        with serve(site):
            port = site.base.rsplit(":", 1)[1]
            hosts = [f"127.0.0.1:{port}", f"localhost:{port}"]
            reader = WebReader(crawl=True, per_host_concurrency=1, visit_pool=shards)
            documents = reader.load_data([f"http://{host}/" for host in hosts])
            assert reader.report.counts()["fetched"] == len(documents) == 26
            assert pools[0].owners == {hosts[0]: 0, hosts[1]: 1}
            assert dict(most) == {hosts[0]: 1, hosts[1]: 1}

            most.clear()
            WebReader(crawl=True, per_host_concurrency=3, visit_pool=shards).load_data(
                [f"http://{host}/" for host in hosts]
            )
            assert max(most.values()) >= 2
    finally:
        engine.close()


@needs_ray
def test_a_fetch_shard_killed_mid_crawl_is_restarted_and_every_page_read_once(
    ray_cluster: Any, shop_url: str
) -> None:
    from ragtune.scale.ray_ingest import RayEngine

    local = WebReader(crawl=True).load_data([f"{shop_url}/products"])
    engine = RayEngine.connect(ray_cluster.address)
    pools: list[Any] = []
    shards = _kept_visit_pools(engine, pools)

    events: list[str] = []

    def kill_the_shard_once(event: Any) -> None:
        events.append(event.url)
        if len(events) == 5:
            [shard] = pools[0]._shards
            engine.ray.kill(shard, no_restart=False)  # Ray restarts it, as after a crash

    try:
        reader = WebReader(crawl=True, visit_pool=shards)
        documents = reader.load_data([f"{shop_url}/products"], on_event=kill_the_shard_once)
    finally:
        engine.close()
    assert len(events) > 5
    assert len(set(events)) == len(events)  # every URL visited once
    assert reader.report.counts()["failed"] == 0
    assert sorted((d.doc_id, d.text) for d in documents) == sorted(
        (d.doc_id, d.text) for d in local
    )


@needs_ray
def test_without_an_address_ray_starts_its_own_beside_another_cluster(
    ray_cluster: Any, small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ray cluster already running on this machine (the module's) is not joined by
    accident: Ray would join it and then refuse the CPU count a run of our own sets.
    Run as a user runs it, in a process of its own: after a Ray of its own, a process
    cannot join another cluster (Ray 2.60 then fails every task with OwnerDiedError)."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    result = run_cli(
        "ingest", str(small_corpus), "--index", str(tmp_path / "idx"), "--engine", "ray"
    )
    assert result.returncode == 0, result.stderr
    assert "Indexed 24 documents" in result.stdout


@needs_ray
def test_joining_a_cluster_after_a_ray_of_its_own_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ray would join, then fail every task with OwnerDiedError; the decision rule is
    checked without starting a Ray (the flag is what a local start sets)."""
    from ragtune.scale import ray_ingest

    monkeypatch.setattr(ray_ingest, "_local_ray_started", True)
    with pytest.raises(RagtuneError) as error:
        ray_ingest.RayEngine.connect("127.0.0.1:9")
    one_line_message(error, "127.0.0.1:9", "already ran a Ray of its own", "new process")


@needs_ray
def test_ray_address_comes_from_the_environment_when_not_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ragtune.scale.ray_ingest import RayEngine

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")  # nothing listens there
    with pytest.raises(RagtuneError) as error:
        RayEngine.connect(None)
    one_line_message(error, "cannot reach the Ray cluster at 127.0.0.1:9")


@needs_ray
def test_ray_ingest_into_postgres_equals_the_local_one(
    ray_cluster: Any, small_corpus: Path, postgres: Any, tmp_path: Path
) -> None:
    reference = tmp_path / "local"
    ingest([str(small_corpus)], reference, IngestSettings())
    index_dir = tmp_path / "index"
    settings = IngestSettings(
        engine="ray", ray_address=ray_cluster.address, store=postgres.table_url("ray_identity")
    )
    ingest([str(small_corpus)], index_dir, settings)
    assert_same_index(index_contents(reference), index_contents(index_dir))


@needs_ray
def test_sync_on_ray_embeds_only_what_changed(ray_cluster: Any, tmp_path: Path) -> None:
    from ragtune.sync import sync

    folder = write_corpus(tmp_path / "notes", 12)
    index_dir = tmp_path / "index"
    ingest([str(folder)], index_dir, IngestSettings())
    (folder / "note-0003.md").write_text("# Changed\n\nThe mill now grinds barley only.\n")
    (folder / "note-0005.md").unlink()
    result = sync(index_dir, engine="ray", ray_address=ray_cluster.address)
    assert (result.changed, result.removed, result.unchanged) == (1, 1, 10)
    assert result.chunks_embedded == 1
    reference = tmp_path / "reference"
    ingest([str(folder)], reference, IngestSettings())
    assert_same_index(index_contents(reference), index_contents(index_dir))


# --- Faults -------------------------------------------------------------------------------


@needs_ray
@slow
def test_a_worker_killed_mid_job_the_job_finishes_every_chunk_once(
    ray_cluster: Any,
    corpus: Path,
    local_contents: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ragtune.scale import ray_ingest

    monkeypatch.setattr(ray_ingest, "CPU_EMBED_BATCH", 8)  # many small tasks: a kill lands mid-way
    victim = next(node for node in ray_cluster.worker_nodes)
    killed: list[int] = []

    def kill_a_worker(done: int, total: int) -> None:
        if not killed:
            killed.append(done)
            ray_cluster.remove_node(victim, allow_graceful=False)

    try:
        result = ingest(
            [str(corpus)],
            tmp_path / "index",
            IngestSettings(engine="ray", ray_address=ray_cluster.address, commit_every=32),
            on_embed=kill_a_worker,
        )
    finally:
        if victim not in ray_cluster.worker_nodes or killed:
            ray_cluster.add_node(num_cpus=1, object_store_memory=100 * 1024 * 1024)
            ray_cluster.wait_for_nodes()
    assert killed and killed[0] < result.insert.chunks  # the node died with work left
    assert result.stats["chunks"] == len(local_contents)
    assert_same_index(local_contents, index_contents(tmp_path / "index"))


@needs_ray
@slow
def test_a_killed_driver_is_completed_by_the_rerun_with_nothing_duplicated(
    ray_cluster: Any, corpus: Path, local_contents: Any, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    command = [
        sys.executable,
        "-m",
        "ragtune",
        "ingest",
        str(corpus),
        "--index",
        str(index_dir),
        "--engine",
        "ray",
        "--ray-address",
        ray_cluster.address,
        "--commit-every",
        "4",
    ]
    driver_log = tmp_path / "driver.log"
    with driver_log.open("wb") as log:
        driver = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        committed = _wait_for_chunks(index_dir, driver, driver_log, deadline=240)
    finally:
        with suppress(ProcessLookupError):  # it may have ended: the assertion says how
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    partial = index_contents(index_dir)
    assert 0 < len(partial) < len(local_contents), committed
    # Only whole documents were committed, each exactly as the local ingest made it.
    by_doc: dict[str, int] = {}
    for doc_id, _, _ in partial.values():
        by_doc[doc_id] = by_doc.get(doc_id, 0) + 1
    expected_by_doc: dict[str, int] = {}
    for doc_id, _, _ in local_contents.values():
        expected_by_doc[doc_id] = expected_by_doc.get(doc_id, 0) + 1
    assert all(expected_by_doc[doc] == n for doc, n in by_doc.items())

    rerun = run_cli(*command[3:], timeout=400)
    assert rerun.returncode == 0, rerun.stderr
    assert "Indexed 120 documents" in rerun.stdout  # the usual end-of-ingest report
    assert_same_index(local_contents, index_contents(index_dir))


def _wait_for_chunks(
    index_dir: Path, driver: subprocess.Popen[bytes], driver_log: Path, deadline: float
) -> int:
    """Chunks committed by ``driver``, once there are some (the driver still running)."""
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        if driver.poll() is not None:
            output = driver_log.read_text(errors="replace")[-2000:]
            raise AssertionError(f"the ingest ended before it could be killed:\n{output}")
        if (index_dir / "ragtune.json").exists():
            try:
                index = VectorStoreIndex.load(index_dir)
                count = index.store.count()
                index.close()
            except RagtuneError:
                count = 0
            if count:
                return count
        time.sleep(0.2)
    raise AssertionError("no commit within the deadline")


@pytest.fixture()
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A PostgreSQL server of this test's own, to stop and start again."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    import tempfile

    server = start_postgres(Path(tempfile.mkdtemp(prefix="ragtune-pg-ray-")))
    try:
        yield server
    finally:
        subprocess.run(_pg_ctl(server, "stop", "-m", "immediate"), capture_output=True, timeout=60)


def _pg_ctl(server: Any, *args: str) -> list[str]:
    command = [str(PG_BIN / "pg_ctl"), "-D", str(server.base / "data"), *args]
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _restart(server: Any) -> None:
    options = f"-p {server.port} -k {server.base} -c listen_addresses=127.0.0.1 -c fsync=off"
    log = str(server.base / "server.log")
    subprocess.run(
        _pg_ctl(server, "-l", log, "-w", "-t", "60", "-o", options, "start"),
        check=True,
        capture_output=True,
        timeout=90,
    )


def _stop(server: Any) -> None:
    subprocess.run(_pg_ctl(server, "-m", "immediate", "stop"), check=True, capture_output=True)


@needs_ray
@slow
def test_an_unreachable_store_is_retried_then_reported_in_one_line(
    ray_cluster: Any,
    corpus: Path,
    local_contents: Any,
    own_postgres: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ragtune.scale import ray_ingest

    monkeypatch.setattr(ray_ingest, "STORE_RETRY_DELAYS", (1.0, 2.0, 3.0, 4.0))
    settings = IngestSettings(
        engine="ray",
        ray_address=ray_cluster.address,
        store=own_postgres.table_url("faults"),
        commit_every=64,
    )
    # Down for a few seconds, mid-write: the retries carry the ingest through.
    index_dir = tmp_path / "index"
    outage: list[threading.Thread] = []

    def outage_at_first_vectors(done: int, total: int) -> None:
        if not outage:
            _stop(own_postgres)
            outage.append(threading.Thread(target=lambda: (time.sleep(3), _restart(own_postgres))))
            outage[0].start()

    ingest([str(corpus)], index_dir, settings, on_embed=outage_at_first_vectors)
    outage[0].join()
    assert_same_index(local_contents, index_contents(index_dir))

    # Down for good: a clear line once the retries are spent; what was committed stays whole.
    monkeypatch.setattr(ray_ingest, "STORE_RETRY_DELAYS", (0.5, 0.5))
    changed = write_corpus(tmp_path / "more", 30, first=1000)
    stopped: list[bool] = []

    def stop_at_first_vectors(done: int, total: int) -> None:
        if not stopped:
            stopped.append(True)
            _stop(own_postgres)

    with pytest.raises(StoreConnectionError) as error:
        ingest([str(changed)], index_dir, settings, on_embed=stop_at_first_vectors)
    one_line_message(error, "still unreachable after 3 attempts", "rerun")
    _restart(own_postgres)
    assert_same_index(local_contents, index_contents(index_dir))  # nothing of the failed run
    ingest([str(changed)], index_dir, settings)
    assert len(index_contents(index_dir)) > len(local_contents)


# --- Bad input ----------------------------------------------------------------------------


def test_engine_ray_without_ray_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_corpus(tmp_path / "notes", 2)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as when absent
    with pytest.raises(RagtuneError) as error:
        ingest([str(folder)], tmp_path / "index", IngestSettings(engine="ray"))
    one_line_message(error, "pip install 'ragtune[ray]'")
    assert not (tmp_path / "index").exists()


@needs_ray
def test_a_bad_ray_address_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "notes", 2)
    index_dir = tmp_path / "index"
    started = time.monotonic()
    result = run_cli(
        "ingest", str(folder), "--index", str(index_dir), "--engine", "ray",
        "--ray-address", "127.0.0.1:9",
    )  # fmt: skip
    assert_one_line_error(result, "cannot reach the Ray cluster at 127.0.0.1:9")
    assert time.monotonic() - started < 60
    assert not index_dir.exists()
    malformed = run_cli(
        "ingest", str(folder), "--index", str(index_dir), "--engine", "ray",
        "--ray-address", "head-node",
    )  # fmt: skip
    assert_one_line_error(malformed, "bad --ray-address 'head-node'")
    assert not index_dir.exists()


def test_ray_address_without_engine_ray_is_refused(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "notes", 1)
    with pytest.raises(RagtuneError) as error:
        ingest([str(folder)], tmp_path / "index", IngestSettings(ray_address="127.0.0.1:6379"))
    one_line_message(error, "--ray-address applies to --engine ray")
    assert not (tmp_path / "index").exists()


def test_the_cli_offers_the_engines_the_library_has() -> None:
    from ragtune.cli import options
    from ragtune.scale.engine import ENGINES, EngineName

    assert get_args(options.Engine) == ENGINES == get_args(EngineName)
