"""``ragtune serve``'s own source endpoints, against a real server on 127.0.0.1.

Ingest jobs from the demo shop and from a scriptable site (a page that waits until the
test lets it answer makes "a job is running" a state the test controls), uploads of
real files (HTML, Markdown, PDF, names meant to escape, bodies over the limit, files
ragtune cannot read), local folders under --files-root, sync, the documents, and
failures: a source that fails mid-way, an unexpected error, a separate ``ragtune
ingest`` process SIGKILLed while the server serves the same index.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docx
import httpx
import pytest
from tests.pdfmaker import make_pdf
from tests.serve_server import running_server
from tests.webserver import Reply, Request, Site, serve

from ragtune import VectorStoreIndex
from ragtune.documents import Document
from ragtune.errors import RagtuneError
from ragtune.serve.config import IndexSpec, ServeConfig
from ragtune.serve.jobs import (
    INTERNAL_ERROR,
    INTERRUPTED,
    Job,
    JobManager,
    JobProgress,
    new_job_id,
)
from ragtune.serve.state import ServedIndex
from ragtune.serve.uploads import safe_name, upload_url

JOB_SECONDS = 120.0
OLD_FACT = "The lighthouse lamp burns for 40 hours."


def page(title: str, text: str) -> str:
    return (
        f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>"
        f"<p>{text}</p></article></body></html>"
    )


@pytest.fixture(scope="module")
def base_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small index (one note), copied by each test that serves it."""
    directory = tmp_path_factory.mktemp("base") / "index"
    note = Document(
        text=f"# Lamps\n\n{OLD_FACT}\n",
        metadata={"url": "https://notes.example/lamps", "title": "Lamps"},
    )
    VectorStoreIndex.from_documents([note], persist_dir=directory)
    return directory


@pytest.fixture()
def index_dir(base_index: Path, tmp_path: Path) -> Path:
    directory = tmp_path / "index"
    shutil.copytree(base_index, directory)
    return directory


def config_for(index_dir: Path, tmp_path: Path, **options: Any) -> ServeConfig:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "rate_limit_per_minute": 100_000,
    }
    values.update(options)
    others = [IndexSpec(name, path) for name, path in values.pop("others", {}).items()]
    return ServeConfig(indexes=[IndexSpec("notes", index_dir), *others], **values)


@contextmanager
def serving(config: ServeConfig) -> Iterator[str]:
    with running_server(config) as base:
        yield base


def wait_for(base: str, job_id: str) -> dict[str, Any]:
    """Follow the job's event stream to its end; the last job object it sent."""
    jobs: list[dict[str, Any]] = []
    done = False
    with httpx.stream("GET", f"{base}/v1/jobs/{job_id}/events", timeout=JOB_SECONDS) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line == "data: [DONE]":
                done = True
                break
            if line.startswith("data: "):
                jobs.append(json.loads(line[len("data: ") :]))
    assert done and jobs
    assert jobs[-1]["status"] in ("succeeded", "failed")
    return jobs[-1]


def submit(base: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = httpx.post(f"{base}/v1/ingest", json=body, timeout=30)
    assert reply.status_code == 202, reply.text
    job = reply.json()
    assert reply.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["object"] == "job" and job["kind"] == "ingest" and job["index"] == "notes"
    return job


def ingested(base: str, body: dict[str, Any]) -> dict[str, Any]:
    job = wait_for(base, submit(base, body)["id"])
    assert job["status"] == "succeeded", job["error"]
    return job


def top_url(base: str, question: str) -> str:
    """The URL of the best passage the server retrieves for ``question`` now."""
    reply = httpx.post(
        f"{base}/v1/retrieve", json={"query": question, "index": "notes", "top_k": 1}, timeout=60
    )
    assert reply.status_code == 200, reply.text
    return str(reply.json()["data"][0]["url"])


def documents(base: str, **params: Any) -> dict[str, Any]:
    reply = httpx.get(f"{base}/v1/documents", params=params, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


def assert_error(reply: httpx.Response, status: int, *fragments: str) -> str:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    message = error["message"]
    assert "\n" not in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- ingest from the web ---------------------------------------------------------------


def test_ingest_of_shop_pages_is_a_job_whose_documents_answer(
    index_dir: Path, tmp_path: Path, shop_url: str
) -> None:
    config = config_for(index_dir, tmp_path, allow_private_urls=True)
    potion = f"{shop_url}/products/dark-energy-potion"
    kite = f"{shop_url}/products/griffin-kite"
    with serving(config) as base:
        job = submit(base, {"urls": [potion, kite], "render": "never"})
        assert job["status"] in ("queued", "running")
        finished = wait_for(base, job["id"])
        assert finished["status"] == "succeeded", finished["error"]
        assert finished["error"] is None and finished["progress"]["stage"] == "done"
        assert finished["report"]["documents"] == 3 and finished["report"]["chunks"] >= 3
        assert {e["url"] for e in finished["events"]} == {potion, kite}
        assert {e["status"] for e in finished["events"]} == {"fetched"}

        listed = documents(base)
        assert listed["total"] == 3 and listed["offset"] == 0 and listed["limit"] == 50
        assert {d["url"] for d in listed["data"]} >= {potion, kite}
        assert all(d["chunks"] >= 1 and d["title"] for d in listed["data"])
        [griffin] = documents(base, q="GRIFFIN")["data"]
        assert griffin["url"] == kite
        assert documents(base, limit=1, offset=1)["data"] == [listed["data"][1]]
        one = httpx.get(f"{base}/v1/documents/{griffin['id']}", timeout=30).json()
        assert one["id"] == griffin["id"] and len(one["chunks"]) == griffin["chunks"]
        assert "kite" in " ".join(chunk["text"] for chunk in one["chunks"]).lower()

        # New questions read the new state.
        assert top_url(base, "What is the flavor of the dark energy potion?") == potion
        assert top_url(base, "How long does the lighthouse lamp burn?").endswith("/lamps")

        recent = httpx.get(f"{base}/v1/jobs", timeout=30).json()
        assert recent["object"] == "list" and recent["data"][0]["id"] == job["id"]
        sync_reply = httpx.post(f"{base}/v1/sync", json={"index": "notes"}, timeout=30)
        assert sync_reply.status_code == 202
        synced = wait_for(base, sync_reply.json()["id"])
        assert synced["status"] == "succeeded" and synced["kind"] == "sync"
        assert synced["report"]["counts"]["removed"] == 0
        assert synced["report"]["documents"] == 3
        assert str(index_dir) not in json.dumps(synced)

    # A finished job is still there for a server started later on the same data.
    record = tmp_path / "data" / "jobs" / f"{job['id']}.json"
    assert json.loads(record.read_text())["status"] == "succeeded"
    # A server killed while a job ran left its record saying "running".
    interrupted = Job(id=new_job_id(), kind="sync", index="notes", status="running")
    (record.parent / f"{interrupted.id}.json").write_text(json.dumps(interrupted.to_dict()))
    with serving(config) as base:
        again = httpx.get(f"{base}/v1/jobs/{job['id']}", timeout=30).json()
        assert again["status"] == "succeeded" and again["report"] == finished["report"]
        recent_ids = [j["id"] for j in httpx.get(f"{base}/v1/jobs", timeout=30).json()["data"]]
        assert job["id"] in recent_ids and synced["id"] in recent_ids
        stopped = httpx.get(f"{base}/v1/jobs/{interrupted.id}", timeout=30).json()
        assert (stopped["status"], stopped["error"]) == ("failed", INTERRUPTED)
        assert_error(httpx.get(f"{base}/v1/jobs/job_{'0' * 32}", timeout=30), 404)
        assert_error(httpx.get(f"{base}/v1/jobs/..%2F..%2Fetc", timeout=30), 404)


def test_a_guarded_server_refuses_private_urls_before_any_job(
    index_dir: Path, tmp_path: Path, shop_url: str
) -> None:
    with serving(config_for(index_dir, tmp_path)) as base:
        reply = httpx.post(f"{base}/v1/ingest", json={"urls": [f"{shop_url}/products"]})
        assert_error(reply, 400, "127.0.0.1", "loopback")
        metadata = httpx.post(
            f"{base}/v1/ingest", json={"urls": ["http://169.254.169.254/latest/meta-data/"]}
        )
        assert_error(metadata, 400, "link-local")
        assert_error(httpx.post(f"{base}/v1/ingest", json={"urls": ["file:///etc/passwd"]}), 400)
        assert httpx.get(f"{base}/v1/jobs").json()["data"] == []
        assert documents(base)["total"] == 1


def test_bad_ingest_requests_are_400_in_openais_shape(index_dir: Path, tmp_path: Path) -> None:
    with serving(config_for(index_dir, tmp_path)) as base:
        url = f"{base}/v1/ingest"
        headers = {"content-type": "application/json"}
        assert_error(httpx.post(url, content=b"{not json", headers=headers), 400, "JSON")
        assert_error(httpx.post(url, content=b"[1, 2]", headers=headers), 400, "object")
        for body, fragment in [
            ({"urls": "https://example.com/"}, "urls"),
            ({"urls": ["https://example.com/"], "max_pages": "5"}, "max_pages"),
            ({"urls": ["https://example.com/"], "max_pages": 0}, "max_pages"),
            ({"urls": ["https://example.com/"], "max_depth": 99}, "max_depth"),
            ({"urls": ["https://example.com/"], "scope": "galaxy"}, "scope"),
            ({"urls": ["https://example.com/"], "render": "sometimes"}, "render"),
            ({"urls": ["https://example.com/"], "crawl": "yes"}, "crawl"),
            ({"urls": ["https://example.com/"], "max_page": 5}, "max_page"),
            ({"urls": [f"https://example.com/{n}" for n in range(10_000)]}, "urls"),
            ({"urls": ["https://example.com/" + "a" * 100_000]}, "urls.0"),
            ({"urls": ["https://exa mple.com/"]}, ""),
            ({"urls": []}, "nothing to ingest"),
            ({}, "nothing to ingest"),
        ]:
            assert_error(httpx.post(url, json=body, timeout=30), 400, fragment)
        assert_error(
            httpx.post(url, content=b"urls=x", headers={"content-type": "text/plain"}), 415
        )
        unknown = httpx.post(url, json={"index": "nope", "urls": ["https://example.com/"]})
        assert_error(unknown, 404, "nope")
        assert_error(httpx.get(f"{base}/v1/documents", params={"limit": 201}), 400, "limit")
        assert httpx.get(f"{base}/v1/jobs").json()["data"] == []


# --- local paths -------------------------------------------------------------------------


def test_local_paths_only_under_the_files_root(index_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "shared"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "kites.md").write_text("# Kites\n\nThe griffin kite costs 89 dollars.\n")
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nThe vault code is 4711.\n")
    (root / "escape").symlink_to(outside)

    with serving(config_for(index_dir, tmp_path)) as base:
        reply = httpx.post(f"{base}/v1/ingest", json={"paths": [str(root / "notes")]})
        assert_error(reply, 403, "--files-root")

    with serving(config_for(index_dir, tmp_path, files_root=root)) as base:
        for refused in [str(outside), "../private", "escape/secret.md", "/etc"]:
            reply = httpx.post(f"{base}/v1/ingest", json={"paths": [refused]})
            assert_error(reply, 403, "outside")
        assert_error(httpx.post(f"{base}/v1/ingest", json={"paths": ["missing"]}), 400)
        job = ingested(base, {"paths": ["notes"]})
        assert job["report"]["documents"] == 2
        assert top_url(base, "How much is the griffin kite?").endswith("kites.md")
        assert "4711" not in json.dumps(documents(base))


# --- uploads -----------------------------------------------------------------------------


def upload(base: str, files: list[tuple[str, bytes]], **fields: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/ingest",
        files=[("files", (name, data)) for name, data in files],
        data=fields,
        timeout=30,
    )


def docx_bytes(text: str) -> bytes:
    document = docx.Document()
    document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_uploaded_files_become_documents_named_after_the_file(
    index_dir: Path, tmp_path: Path
) -> None:
    html = page("Moon facts", "The moon orbits the earth every 27.3 days.").encode()
    markdown = b"# Kites\n\nThe griffin kite costs 89 dollars.\n"
    pdf = make_pdf(
        [
            "The phoenix quill writes in golden ink for ten years.",
            "The quill's case is carved from storm oak.",
        ]
    )
    disguised = page("Tide tables", "High tide at Puffin Cove is at 6:40 in the morning.")
    word = docx_bytes("The bakery on Elm Street bakes rye bread every Tuesday.")
    with serving(config_for(index_dir, tmp_path)) as base:
        reply = upload(
            base,
            [
                ("moon.html", html),
                ("kites.md", markdown),
                ("quill.pdf", pdf),
                ("tides.pdf", disguised.encode()),
                ("bakery.docx", word),
            ],
        )
        assert reply.status_code == 202, reply.text
        job = wait_for(base, reply.json()["id"])
        assert job["status"] == "succeeded", job["error"]
        notes = {e["url"]: e["reason"] for e in job["events"]}
        assert notes["upload://tides.pdf"] == "named .pdf, but its content is HTML: read as HTML"
        assert notes["upload://kites.md"] == ""
        types = {f["name"]: f["type"] for f in job["report"]["uploads"]["files"]}
        assert types == {
            "moon.html": "text/html",
            "kites.md": "text/markdown",
            "quill.pdf": "application/pdf",
            "tides.pdf": "text/html",
            "bakery.docx": "application/docx",
        }
        listed = documents(base, q="upload://")
        assert {d["url"] for d in listed["data"]} == {
            "upload://moon.html",
            "upload://kites.md",
            "upload://quill.pdf",
            "upload://tides.pdf",
            "upload://bakery.docx",
        }
        assert top_url(base, "How often does the moon orbit the earth?") == "upload://moon.html"
        assert top_url(base, "What ink does the phoenix quill use?") == "upload://quill.pdf"
        assert top_url(base, "When is high tide at Puffin Cove?") == "upload://tides.pdf"
        assert top_url(base, "When does the bakery bake rye?") == "upload://bakery.docx"
        # Where the server keeps the files is nobody's business.
        for document in listed["data"]:
            shown = httpx.get(f"{base}/v1/documents/{document['id']}").text
            assert str(tmp_path) not in shown and "file://" not in shown
        # A PDF's pages share its URL; each page's document shows its own text and page.
        quill_pages = documents(base, q="quill.pdf")["data"]
        shown_pages = [httpx.get(f"{base}/v1/documents/{d['id']}").json() for d in quill_pages]
        assert sorted(
            (s["metadata"]["page"], "storm oak" in s["chunks"][0]["text"]) for s in shown_pages
        ) == [
            (1, False),
            (2, True),
        ]
        # The files went once their text was in the index.
        assert not (tmp_path / "data" / "uploads" / job["id"]).exists()

        # The same name again replaces its documents rather than adding a second copy.
        again = upload(base, [("kites.md", b"# Kites\n\nThe griffin kite now costs 95 dollars.\n")])
        assert wait_for(base, again.json()["id"])["status"] == "succeeded"
        [kite] = documents(base, q="kites.md")["data"]
        chunks = httpx.get(f"{base}/v1/documents/{kite['id']}").json()["chunks"]
        assert "95 dollars" in chunks[0]["text"]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\x.md", "x.md"),
        ("/etc/cron.d/evil.md", "evil.md"),
        ("C:\\Windows\\system.ini", "system.ini"),
        ("..", "upload"),
        (".bashrc", "bashrc"),
        ("CON", "_CON"),
        ("con.md", "_con.md"),
        ("bell\x07and\x1bescape.md", "bellandescape.md"),
        ("a" * 500 + ".md", "a" * 117 + ".md"),
        ("what?<is>this|.md", "whatisthis.md"),
    ],
)
def test_safe_names(given: str, stored: str) -> None:
    assert safe_name(given) == stored


def test_upload_names_that_try_to_escape_stay_in_the_jobs_folder(
    index_dir: Path, tmp_path: Path
) -> None:
    names = [
        "../../etc/passwd",
        "..\\..\\x.md",
        str(tmp_path / "absolute.md"),
        "nul\x00name.md",
        "l" * 1000 + ".md",
        "CON",
        "same.md",
        "same.md",
    ]
    files = [
        (name, f"# Note {n}\n\nFact number {n} is {n * 7}.\n".encode())
        for n, name in enumerate(names)
    ]
    with serving(config_for(index_dir, tmp_path)) as base:
        reply = upload(base, files)
        assert reply.status_code == 202, reply.text
        job = wait_for(base, reply.json()["id"])
        assert job["status"] == "succeeded", job["error"]
        # A raw NUL and an escape sequence in the name, as no polite client sends them.
        boundary = "ragtuneboundary"
        raw = multipart_body(boundary, "../evil\x00\x1b[31m.md", b"# Evil\n\nNot so evil.\n")
        reply = httpx.post(
            f"{base}/v1/ingest",
            content=raw,
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert reply.status_code == 202, reply.text
        evil = wait_for(base, reply.json()["id"])
        assert evil["status"] == "succeeded", evil["error"]
        assert [f["name"] for f in evil["report"]["uploads"]["files"]] == ["evil[31m.md"]
    stored = [f["name"] for f in job["report"]["uploads"]["files"]]
    assert len(stored) == len(names)
    assert {"passwd", "x.md", "absolute.md", "_CON", "same.md", "same-2.md"} <= set(stored)
    assert all(len(name) <= 120 and "\x00" not in name and "/" not in name for name in stored)
    assert {e["url"] for e in job["events"]} == {upload_url(name) for name in stored}
    # Nothing was written where the names pointed, nor anywhere else outside the job's
    # folder (which went with the job).
    assert not (tmp_path / "absolute.md").exists()
    data = tmp_path / "data"
    assert [p for p in data.rglob("*") if p.is_file() and p.parent != data / "jobs"] == []


def multipart_body(boundary: str, name: str, data: bytes) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )


def test_an_upload_over_the_limit_is_413_and_leaves_nothing(
    index_dir: Path, tmp_path: Path
) -> None:
    limit = 64 * 1024
    config = config_for(index_dir, tmp_path, max_upload_bytes=limit)
    big = b"# Big\n\n" + b"word " * (limit // 4)
    with serving(config) as base:
        assert_error(upload(base, [("big.md", big)]), 413)

        # Without a Content-Length the body is counted as it streams to disk.
        boundary = "ragtuneboundary"

        def chunked() -> Iterator[bytes]:
            body = multipart_body(boundary, "big.md", big)
            for start in range(0, len(body), 8192):
                yield body[start : start + 8192]

        reply = httpx.post(
            f"{base}/v1/ingest",
            content=chunked(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
            timeout=30,
        )
        assert_error(reply, 413)
        cut_short = multipart_body(boundary, "cut.md", b"# Cut\n\nThis file never ends")[:-30]
        reply = httpx.post(
            f"{base}/v1/ingest",
            content=cut_short,
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert_error(reply, 400, "multipart")
        small = upload(base, [("small.md", b"# Small\n\nA small file fits.\n")])
        assert small.status_code == 202
        assert wait_for(base, small.json()["id"])["status"] == "succeeded"
        jobs = httpx.get(f"{base}/v1/jobs").json()["data"]
    assert len(jobs) == 1
    assert list((tmp_path / "data" / "uploads").iterdir()) == []


def test_files_ragtune_cannot_read_are_415(index_dir: Path, tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(200)
    binary = bytes(range(256)) * 4
    archive = b"PK\x03\x04" + bytes(100)
    with serving(config_for(index_dir, tmp_path)) as base:
        assert_error(upload(base, [("photo.png", png)]), 415, "PNG")
        assert_error(upload(base, [("notes.md", binary)]), 415, "notes.md")
        assert_error(upload(base, [("ok.md", b"# ok\n\nfine\n"), ("a.docx", archive)]), 415)
        assert_error(upload(base, [("empty.md", b"  \n")]), 415, "empty")
        assert httpx.get(f"{base}/v1/jobs").json()["data"] == []
    assert list((tmp_path / "data" / "uploads").iterdir()) == []


# --- turns, failures and the served state ------------------------------------------------


@contextmanager
def slow_site() -> Iterator[tuple[Site, threading.Event]]:
    """A site whose /slow page answers only once the test sets the event."""
    release = threading.Event()
    site = Site()

    def slow(request: Request) -> Reply:
        release.wait(JOB_SECONDS)
        return Reply(body=page("Comet", "The comet Tempel returns every 5.5 years.").encode())

    site.routes["/slow"] = slow
    site.page("/owls", page("Owls", "The snowy owl hunts lemmings in the tundra."))
    site.page("/bees", page("Bees", "A honeybee colony keeps its hive at 35 degrees."))
    site.routes["/gone"] = Reply(404, b"<h1>Not found</h1>")
    with serve(site):
        yield site, release
    release.set()


def job_status(base: str, job_id: str) -> str:
    return str(httpx.get(f"{base}/v1/jobs/{job_id}", timeout=30).json()["status"])


def wait_until(condition: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_ingests_into_one_index_take_turns_while_questions_read_the_last_commit(
    index_dir: Path, tmp_path: Path
) -> None:
    other_dir = tmp_path / "other"
    shutil.copytree(index_dir, other_dir)
    config = config_for(index_dir, tmp_path, allow_private_urls=True, others={"other": other_dir})
    with slow_site() as (site, release), serving(config) as base:
        first = submit(base, {"urls": [f"{site.base}/slow", f"{site.base}/owls"]})
        second = submit(base, {"urls": [f"{site.base}/owls", f"{site.base}/bees"]})
        wait_until(lambda: site.requests_for("/slow"))
        assert job_status(base, first["id"]) == "running"
        assert job_status(base, second["id"]) == "queued"
        # While the first job runs, questions are answered from the index as it was.
        assert top_url(base, "How often does the comet Tempel return?").endswith("/lamps")
        assert documents(base)["total"] == 1
        # Another index's jobs do not wait for this one's.
        elsewhere = upload(base, [("bees.md", b"# Bees\n\nBees dance.\n")], index="other")
        assert wait_for(base, elsewhere.json()["id"])["status"] == "succeeded"
        assert job_status(base, first["id"]) == "running"
        assert documents(base, index="other")["total"] == 2
        # A full queue is refused at once, with a time to come back.
        queued = [submit(base, {"urls": [f"{site.base}/owls"]}) for _ in range(15)]
        full = httpx.post(f"{base}/v1/ingest", json={"urls": [f"{site.base}/owls"]})
        assert_error(full, 429)
        assert full.headers["retry-after"].isdigit()

        release.set()
        assert wait_for(base, first["id"])["status"] == "succeeded"
        assert wait_for(base, second["id"])["status"] == "succeeded"
        assert all(wait_for(base, job["id"])["status"] == "succeeded" for job in queued)
        first_job = httpx.get(f"{base}/v1/jobs/{first['id']}").json()
        second_job = httpx.get(f"{base}/v1/jobs/{second['id']}").json()
        assert second_job["started"] >= first_job["finished"]
        urls = [d["url"] for d in documents(base)["data"]]
        assert sorted(urls) == sorted(
            {
                f"{site.base}/slow",
                f"{site.base}/owls",
                f"{site.base}/bees",
                "https://notes.example/lamps",
            }
        )
        assert top_url(base, "How often does the comet Tempel return?") == f"{site.base}/slow"


def test_a_failed_job_leaves_the_index_answering_and_the_next_one_runs(
    index_dir: Path, tmp_path: Path
) -> None:
    config = config_for(index_dir, tmp_path, allow_private_urls=True)
    with slow_site() as (site, release), serving(config) as base:
        release.set()
        failed = wait_for(
            base, submit(base, {"urls": [f"{site.base}/owls", f"{site.base}/gone"]})["id"]
        )
        assert failed["status"] == "failed" and failed["report"] is None
        assert "/gone" in failed["error"] and "404" in failed["error"]
        assert "\n" not in failed["error"] and "Traceback" not in failed["error"]
        assert documents(base)["total"] == 1
        assert top_url(base, "How long does the lighthouse lamp burn?").endswith("/lamps")
        ingested(base, {"urls": [f"{site.base}/owls"]})
        assert top_url(base, "What does the snowy owl hunt?") == f"{site.base}/owls"

        # An upload's form fields are the JSON body's, checked as strictly.
        note = [("otters.md", b"# Otters\n\nThe sea otter holds hands while sleeping.\n")]
        for fields, fragment in [
            ({"crawl": "maybe"}, "crawl"),
            ({"max_pages": "ten"}, "max_pages"),
            ({"max_pages": "0"}, "max_pages"),
            ({"render": "sometimes"}, "render"),
            ({"colour": "blue"}, "colour"),
        ]:
            assert_error(upload(base, note, **fields), 400, fragment)
        assert_error(upload(base, note, index="elsewhere"), 404, "elsewhere")
        both = upload(base, note, index="notes", urls=f"{site.base}/bees", render="never")
        assert both.status_code == 202, both.text
        job = wait_for(base, both.json()["id"])
        assert job["status"] == "succeeded", job["error"]
        assert {e["url"] for e in job["events"]} == {f"{site.base}/bees", "upload://otters.md"}
        assert top_url(base, "How does the sea otter sleep?") == "upload://otters.md"


def test_an_unexpected_error_in_a_job_is_internal_error_and_the_worker_goes_on(
    index_dir: Path, tmp_path: Path
) -> None:
    served = ServedIndex(IndexSpec("notes", index_dir))
    manager = JobManager(tmp_path / "data")

    def broken(progress: JobProgress) -> dict[str, Any]:
        progress.page("https://example.com/x", "fetched")
        raise KeyError("/srv/secret/path")

    def refused(progress: JobProgress) -> dict[str, Any]:
        raise RagtuneError(f"{index_dir / 'ragtune.json'}: the source\nsaid no")

    def fine(progress: JobProgress) -> dict[str, Any]:
        return {"documents": served.current().stats()["documents"]}

    jobs = [manager.submit(served, "ingest", work) for work in (broken, refused, fine)]
    wait_until(lambda: all(job.is_finished for job in jobs))
    first, second, third = (job.to_dict() for job in jobs)
    assert (first["status"], first["error"]) == ("failed", INTERNAL_ERROR)
    assert "secret" not in json.dumps(first)
    assert second["status"] == "failed"
    assert second["error"] == "<index notes>/ragtune.json: the source said no"
    assert third["status"] == "succeeded" and third["report"] == {"documents": 1}
    assert served.current().stats()["documents"] == 1


def test_a_killed_ingest_process_leaves_the_served_index_answering(
    index_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "shared"
    folder = root / "facts"
    folder.mkdir(parents=True)
    for n in range(40):
        (folder / f"fact-{n:02}.md").write_text(
            f"# Fact {n}\n\n" + f"Island {n} has {n * 3 + 1} lighthouses and {n} harbours. " * 20
        )
    (folder / "fact-07.md").write_text("# Fact 7\n\nThe albatross colony nests on island 7.\n")
    config = config_for(index_dir, tmp_path, files_root=root)
    manifest = index_dir / "ragtune.json"
    before = manifest.stat().st_mtime_ns

    def manifest_changed() -> bool:
        return (index_dir / "ragtune.lock").exists() and manifest.stat().st_mtime_ns != before

    with serving(config) as base:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ragtune",
                "ingest",
                str(folder),
                "--index",
                str(index_dir),
                "--commit-every",
                "16",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # Killed once it has committed part of its documents, mid-write.
            wait_until(lambda: manifest_changed() or process.poll() is not None, 120)
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == -signal.SIGKILL
        committed = VectorStoreIndex.load(index_dir).stats()["documents"]
        assert 1 < committed < 41
        assert top_url(base, "How long does the lighthouse lamp burn?").endswith("/lamps")
        assert documents(base)["total"] >= 1
        job = ingested(base, {"paths": ["facts"]})
        assert job["report"]["documents"] == 41
        assert documents(base)["total"] == 41
        assert top_url(base, "Where does the albatross colony nest?").endswith("fact-07.md")


def test_deleting_a_document_removes_it_and_questions_still_answer(
    index_dir: Path, tmp_path: Path
) -> None:
    with serving(config_for(index_dir, tmp_path)) as base:
        ingested_job = wait_for(
            base,
            upload(base, [("owls.md", b"# Owls\n\nThe snowy owl hunts lemmings.\n")]).json()["id"],
        )
        assert ingested_job["status"] == "succeeded"
        [owls] = documents(base, q="owls")["data"]
        reply = httpx.delete(f"{base}/v1/documents/{owls['id']}", params={"index": "notes"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["id"] == owls["id"] and reply.json()["deleted"] is True
        assert documents(base, q="owls")["total"] == 0
        assert_error(httpx.get(f"{base}/v1/documents/{owls['id']}"), 404)
        assert_error(httpx.delete(f"{base}/v1/documents/{owls['id']}"), 404)
        assert top_url(base, "How long does the lighthouse lamp burn?").endswith("/lamps")
        delete_job = httpx.get(f"{base}/v1/jobs/{reply.json()['job']}").json()
        assert delete_job["kind"] == "delete" and delete_job["status"] == "succeeded"


def test_the_job_stream_survives_a_client_that_leaves(index_dir: Path, tmp_path: Path) -> None:
    config = config_for(index_dir, tmp_path, allow_private_urls=True)
    with slow_site() as (site, release), serving(config) as base:
        job = submit(base, {"urls": [f"{site.base}/slow"]})
        with httpx.stream("GET", f"{base}/v1/jobs/{job['id']}/events", timeout=30) as reply:
            first_line = next(line for line in reply.iter_lines() if line.startswith("data: "))
            assert json.loads(first_line[6:])["id"] == job["id"]
        release.set()
        assert wait_for(base, job["id"])["status"] == "succeeded"


@contextmanager
def embeddings_endpoint() -> Iterator[tuple[str, dict[str, int]]]:
    """An OpenAI-compatible embeddings endpoint over the bundled MiniLM that answers
    400 to batches of texts from the ``fail_after``-th one on (questions, one text
    each, always succeed), while ``script["fail_after"]`` is set."""
    from ragtune.index.embedding import make_embedder

    local = make_embedder(None)
    script = {"batches": 0, "fail_after": 0}

    def answer(request: Request) -> Reply:
        texts = list(request.json()["input"])
        if len(texts) > 1:
            script["batches"] += 1
            if script["fail_after"] and script["batches"] >= script["fail_after"]:
                failure = {"error": {"message": "the embedding service fell over", "type": "x"}}
                return Reply(400, json.dumps(failure).encode(), content_type="application/json")
        data = [
            {"object": "embedding", "index": i, "embedding": [float(x) for x in vector]}
            for i, vector in enumerate(local.embed(texts))
        ]
        body = {"object": "list", "data": data, "model": "minilm"}
        return Reply(body=json.dumps(body).encode(), content_type="application/json")

    site = Site()
    site.routes["/v1/embeddings"] = answer
    with serve(site):
        yield f"openai:{site.base}/v1?model=minilm&dimensions=384", script


def test_an_embedder_failing_mid_ingest_leaves_the_index_answering(tmp_path: Path) -> None:
    index_dir = tmp_path / "remote-index"
    sources = Site()
    for n, animal in enumerate(["otter", "heron", "lynx", "marten", "badger", "stoat"]):
        sources.page(f"/{animal}", page(animal.title(), f"The {animal} was seen {n + 2} times."))
    config = config_for(index_dir, tmp_path, allow_private_urls=True)
    with embeddings_endpoint() as (spec, script), serve(sources):
        note = Document(text=f"# Lamps\n\n{OLD_FACT}\n", metadata={"url": "https://n.example/l"})
        VectorStoreIndex.from_documents([note], persist_dir=index_dir, embed_model=spec)
        with serving(config) as base:
            animals = [f"{sources.base}/{a}" for a in ("otter", "heron", "lynx", "marten")]
            # The pages are read; embedding them fails.
            script["fail_after"] = script["batches"] + 1
            failed = wait_for(base, submit(base, {"urls": animals})["id"])
            assert failed["status"] == "failed"
            assert "fell over" in failed["error"] and "\n" not in failed["error"]
            assert documents(base)["total"] == 1
            assert top_url(base, "How long does the lighthouse lamp burn?").endswith("/l")
            script["fail_after"] = 0
            job = ingested(base, {"urls": [*animals, f"{sources.base}/badger"]})
            assert job["report"]["documents"] == 6
            assert top_url(base, "How often was the badger seen?") == f"{sources.base}/badger"
