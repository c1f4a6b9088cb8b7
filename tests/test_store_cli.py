"""The stores and filters from the command line: PostgreSQL end to end, and
bad input (unreachable store, foreign scheme, bad table, unknown filter key)
as one-line errors that write nothing."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from tests.helpers import assert_one_line_error, run_cli
from tests.postgres_server import PostgresServer

from ragtune.index.manifest import MANIFEST


def test_postgres_store_end_to_end(postgres: PostgresServer, notes: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    store = postgres.table_url(f"cli_{uuid.uuid4().hex[:8]}")
    result = run_cli("ingest", str(notes), "--index", str(index), "--store", store)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((index / MANIFEST).read_text())
    assert manifest["store"] == postgres.url  # no table parameter, no password
    assert manifest["table"].startswith("cli_")

    found = run_cli("retrieve", "How long does the lamp burn?", "--index", str(index), "--json")
    assert found.returncode == 0, found.stderr
    results = json.loads(found.stdout)["results"]
    assert "40 hours" in results[0]["text"]

    only_kites = run_cli(
        "retrieve",
        "How long does the lamp burn?",
        "--index",
        str(index),
        "--json",
        "--filter",
        "url^=" + (notes / "kites.md").resolve().as_uri(),
    )
    assert only_kites.returncode == 0, only_kites.stderr
    assert [r["title"] for r in json.loads(only_kites.stdout)["results"]] == ["kites"] or all(
        "kites.md" in r["url"] for r in json.loads(only_kites.stdout)["results"]
    )

    again = run_cli("ingest", str(notes), "--index", str(index))
    assert again.returncode == 0, again.stderr
    assert "0 fetched, 2 unchanged" in again.stdout  # files as they were: not read


def test_unreachable_store_is_a_one_line_error(
    notes: Path, tmp_path: Path, closed_port_url: str
) -> None:
    port = closed_port_url.rsplit(":", 1)[1].strip("/")
    index = tmp_path / "idx"
    result = run_cli(
        "ingest",
        str(notes),
        "--index",
        str(index),
        "--store",
        f"postgresql://ragtune:secret@127.0.0.1:{port}/postgres",
    )
    assert_one_line_error(result, "cannot connect to postgresql://ragtune@127.0.0.1")
    assert "secret" not in result.stderr
    assert not index.exists()


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("mysql://root@127.0.0.1/db", "unknown store"),
        ("redis://127.0.0.1", "unknown store"),
        ("postgresql://u@127.0.0.1/db?table=Robert'); DROP TABLE x;--", "invalid table name"),
        ("postgresql://u@127.0.0.1/db?table=" + "t" * 80, "invalid table name"),
    ],
)
def test_bad_store_urls(notes: Path, tmp_path: Path, store: str, message: str) -> None:
    index = tmp_path / "idx"
    result = run_cli("ingest", str(notes), "--index", str(index), "--store", store)
    assert_one_line_error(result, message)
    assert not index.exists()


def test_index_whose_server_is_gone(
    postgres: PostgresServer, notes: Path, tmp_path: Path, closed_port_url: str
) -> None:
    index = tmp_path / "idx"
    table = f"gone_{uuid.uuid4().hex[:8]}"
    assert (
        run_cli(
            "ingest", str(notes), "--index", str(index), "--store", postgres.table_url(table)
        ).returncode
        == 0
    )
    manifest_file = index / MANIFEST
    manifest = json.loads(manifest_file.read_text())

    # The table dropped behind the index's back.
    dropped = json.loads(manifest_file.read_text())
    dropped["table"] = "never_created"
    manifest_file.write_text(json.dumps(dropped))
    assert_one_line_error(run_cli("retrieve", "kite", "--index", str(index)), "no table")

    # The server moved away.
    port = closed_port_url.rsplit(":", 1)[1].strip("/")
    manifest["store"] = f"postgresql://ragtune@127.0.0.1:{port}/postgres"
    manifest_file.write_text(json.dumps(manifest))
    before = manifest_file.read_bytes()
    assert_one_line_error(run_cli("retrieve", "kite", "--index", str(index)), "cannot connect")
    assert_one_line_error(run_cli("ingest", str(notes), "--index", str(index)), "cannot connect")
    assert manifest_file.read_bytes() == before


def test_store_of_an_existing_index_cannot_change(
    postgres: PostgresServer, notes: Path, tmp_path: Path
) -> None:
    index = tmp_path / "idx"
    assert run_cli("ingest", str(notes), "--index", str(index)).returncode == 0
    result = run_cli("ingest", str(notes), "--index", str(index), "--store", postgres.url)
    assert_one_line_error(result, "keeps its chunks in lancedb")


def test_filter_errors(notes: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    assert run_cli("ingest", str(notes), "--index", str(index)).returncode == 0
    before = {p: p.read_bytes() for p in index.rglob("*") if p.is_file()}
    for bad, message in [
        ("langauge=en", "unknown filter key 'langauge'"),
        ("no operator", "cannot read filter"),
        ("=value", "cannot read filter"),
        ("bad key!=1", "invalid filter key"),
    ]:
        result = run_cli("retrieve", "kite", "--index", str(index), "--filter", bad)
        assert_one_line_error(result, message)
    result = run_cli("ask", "kite?", "--index", str(index), "--filter", "nope=1")
    assert_one_line_error(result, "unknown filter key 'nope'")
    assert {p: p.read_bytes() for p in index.rglob("*") if p.is_file()} == before

    ok = run_cli("retrieve", "kite", "--index", str(index), "--json", "--filter", "title=lamps")
    assert ok.returncode == 0, ok.stderr
    assert {r["title"] for r in json.loads(ok.stdout)["results"]} == {"lamps"}
