"""One contract, two stores: every test here runs against the embedded LanceDB
store and against PostgreSQL + pgvector (a private server on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ragtune import Document, VectorStoreIndex
from ragtune.errors import InvalidQueryError
from ragtune.index.filters import MetadataFilter, MetadataFilters

MakeIndex = Callable[[list[Document]], VectorStoreIndex]


@pytest.fixture()
def make_index(store_url: str, tmp_path: Path) -> MakeIndex:
    def make(documents: list[Document]) -> VectorStoreIndex:
        return VectorStoreIndex.from_documents(
            documents, persist_dir=tmp_path / "idx", store=store_url
        )

    return make


def doc(url: str, text: str, **metadata: object) -> Document:
    return Document(text=text, metadata={"url": url, "title": url.rsplit("/", 1)[-1], **metadata})


def library() -> list[Document]:
    return [
        doc(
            "https://shop.example/docs/kites",
            "# Kites\n\nThe griffin kite costs 89 dollars and flies in strong wind.",
            lang="en",
            year=2021,
            date="2021-03-04",
            featured=True,
        ),
        doc(
            "https://shop.example/docs/potions",
            "# Potions\n\nThe dark energy potion tastes of cherry cola.",
            lang="en",
            year=2023,
            date="2023-07-19",
            featured=False,
        ),
        doc(
            "https://shop.example/blog/lamps",
            "# Lamps\n\nThe lighthouse lamp burns whale-free oil for 40 hours.",
            lang="de",
            year=2024,
            date="2024-01-02",
        ),
        doc(
            "https://other.example/kites",
            "# Kites elsewhere\n\nA rival griffin kite is sold for 120 dollars.",
            lang="en",
            year=2022,
            date="2022-11-30",
        ),
    ]


def manual_pages() -> list[Document]:
    """Three pages of one PDF: three documents that share a URL."""
    return [
        Document(
            text=f"# Page {n}\n\nThe kite manual, page {n}.",
            metadata={"url": "https://shop.example/manual.pdf", "title": "manual", "page": n},
            id_=f"manual-page-{n}",
        )
        for n in (1, 2, 3)
    ]


def urls(index: VectorStoreIndex, question: str, k: int = 4, **options: object) -> list[str]:
    retriever = index.as_retriever(similarity_top_k=k, **options)  # type: ignore[arg-type]
    return [node.metadata["url"] for node in retriever.retrieve(question)]


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_each_mode_finds_the_right_document(make_index: MakeIndex, mode: str) -> None:
    index = make_index(library())
    assert urls(index, "What does the dark energy potion taste like?", mode=mode)[0] == (
        "https://shop.example/docs/potions"
    )
    [best] = index.as_retriever(similarity_top_k=1, mode=mode).retrieve(  # type: ignore[arg-type]
        "How long does the lighthouse lamp burn?"
    )
    assert "40 hours" in best.text
    assert best.metadata["lang"] == "de"
    assert 0.0 < best.metadata["similarity"] <= 1.0


def test_reload_counts_and_metadata(make_index: MakeIndex, store_url: str, tmp_path: Path) -> None:
    make_index(library()).close()
    index = VectorStoreIndex.load(tmp_path / "idx")
    assert index.stats()["documents"] == 4
    assert index.stats()["chunks"] == index.store.count() == 4
    metadata = index.store.document_metadata()
    assert metadata["https://shop.example/docs/kites"]["year"] == 2021
    assert metadata["https://shop.example/docs/kites"]["site"] == "shop.example"
    ids = index.store.chunk_ids()
    assert len(ids) == len(set(ids)) == 4


def test_changed_document_replaces_its_chunks_and_reuses_vectors(make_index: MakeIndex) -> None:
    long_text = "\n\n".join(
        f"## Part {n}\n\n" + f"Paragraph {n} about the griffin kite's frame and string. " * 12
        for n in range(6)
    )
    first = doc("https://shop.example/docs/manual", "# Manual\n\n" + long_text)
    index = make_index([first])
    chunks_before = index.stats()["chunks"]
    assert chunks_before > 2
    changed = doc(
        "https://shop.example/docs/manual",
        "# Manual\n\n" + long_text + "\n\n## Storage\n\nKeep the kite in its velvet sleeve.",
    )
    index.insert_documents([changed])
    stats = index.last_insert
    assert stats.chunks >= chunks_before
    # Only the chunks whose text changed were embedded; the rest came from the store.
    assert 1 <= stats.embedded < stats.chunks
    assert index.stats()["documents"] == 1
    assert index.stats()["chunks"] == stats.chunks
    assert "velvet sleeve" in index.as_retriever(1).retrieve("How is the kite stored?")[0].text

    index.insert_documents([doc("https://shop.example/docs/manual", "# Manual\n\nShort now.")])
    assert index.stats()["chunks"] == 1
    assert index.as_retriever(1, mode="keyword").retrieve("velvet sleeve") == [] or (
        "velvet" not in index.as_retriever(1, mode="keyword").retrieve("velvet sleeve")[0].text
    )


def test_unchanged_documents_are_left_alone(make_index: MakeIndex) -> None:
    index = make_index(library())
    index.insert_documents(library())
    assert index.last_insert.unchanged == 4
    assert index.last_insert.embedded == 0
    assert index.stats()["chunks"] == 4


def test_delete_documents(make_index: MakeIndex) -> None:
    index = make_index(library())
    kites = library()[0].id_
    assert index.delete_documents([kites, "not-there"]) == 1
    assert index.stats()["documents"] == 3
    assert "https://shop.example/docs/kites" not in urls(index, "griffin kite price")


def test_filters_by_url_prefix_site_and_any_key(make_index: MakeIndex) -> None:
    index = make_index(library())
    question = "griffin kite price"
    assert set(urls(index, question, filters={"url": ("https://other.example/kites",)})) == {
        "https://other.example/kites"
    }
    docs_only = urls(index, question, filters=["url^=https://shop.example/docs/"])
    assert set(docs_only) == {
        "https://shop.example/docs/kites",
        "https://shop.example/docs/potions",
    }
    assert set(urls(index, question, filters={"site": "other.example"})) == {
        "https://other.example/kites"
    }
    assert set(urls(index, question, filters={"lang": "de"})) == {"https://shop.example/blog/lamps"}
    assert "https://shop.example/blog/lamps" not in urls(index, question, filters=["lang!=de"])
    # Numbers compare as numbers, ISO dates as strings, booleans as booleans.
    assert set(urls(index, question, filters=["year>=2023"])) == {
        "https://shop.example/docs/potions",
        "https://shop.example/blog/lamps",
    }
    assert set(urls(index, question, filters=["date<2022-01-01"])) == {
        "https://shop.example/docs/kites"
    }
    between = MetadataFilters(
        (MetadataFilter("date", "2022-01-01", ">="), MetadataFilter("date", "2023-12-31", "<="))
    )
    assert set(urls(index, question, filters=between)) == {
        "https://other.example/kites",
        "https://shop.example/docs/potions",
    }
    assert set(urls(index, question, filters={"featured": True})) == {
        "https://shop.example/docs/kites"
    }
    assert set(urls(index, question, filters={"year": [2021, 2024]})) == {
        "https://shop.example/docs/kites",
        "https://shop.example/blog/lamps",
    }


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_filter_applies_before_the_top_k_cut(make_index: MakeIndex, mode: str) -> None:
    # The only German page is a poor match for the question, yet with the filter
    # it is the one result, not an empty list after cutting the top 1.
    index = make_index(library())
    found = urls(index, "griffin kite lamp", k=1, mode=mode, filters={"lang": "de"})
    assert found == ["https://shop.example/blog/lamps"]


def test_filter_values_are_data_not_sql(make_index: MakeIndex) -> None:
    index = make_index(library())
    for hostile in ("x' OR '1'='1", "'); DROP TABLE chunks; --", "%", "_", "\\", "ü\u202e"):
        assert urls(index, "kite", filters={"lang": hostile}) == []
        assert urls(index, "kite", filters=[f"url^={hostile}"]) == []
    assert index.stats()["chunks"] == 4


def test_unknown_filter_key_is_an_error(make_index: MakeIndex) -> None:
    index = make_index(library())
    with pytest.raises(InvalidQueryError, match="unknown filter key 'langauge'.*lang"):
        index.as_retriever(filters={"langauge": "en"})
    with pytest.raises(InvalidQueryError, match="cannot read filter"):
        index.as_retriever(filters=["no operator here"])


def test_mmr_prefers_passages_that_differ(make_index: MakeIndex) -> None:
    same = "The griffin kite costs 89 dollars at the shop, payable in gold."
    documents = [
        doc(f"https://shop.example/copies/{n}", f"# Copy {n}\n\n{same} Copy number {n}.")
        for n in range(4)
    ]
    documents.append(
        doc("https://shop.example/docs/wind", "# Wind\n\nThe griffin kite needs strong wind.")
    )
    index = make_index(documents)
    plain = urls(index, "griffin kite cost", k=2, mode="dense")
    assert all("/copies/" in url for url in plain)
    diverse = urls(index, "griffin kite cost", k=2, mode="dense", mmr=True, mmr_lambda=0.3)
    assert any("/copies/" in url for url in diverse)
    assert "https://shop.example/docs/wind" in diverse


def test_awkward_text_round_trips(make_index: MakeIndex) -> None:
    text = "# Quotes ' \" ; -- \\ and NUL\x00\n\nKite facts: emoji 🪁, NUL\x00, RTL \u202e done."
    index = make_index([doc("https://shop.example/q'uote", text, note='it\'s "fine"')])
    [node] = index.as_retriever(1).retrieve("emoji kite facts")
    assert "🪁" in node.text
    assert node.metadata["note"] == 'it\'s "fine"'
    assert node.metadata["url"] == "https://shop.example/q'uote"


def test_document_hashes_group_pages_of_one_url(make_index: MakeIndex) -> None:
    pages = manual_pages()
    index = make_index([*pages, *library()])
    hashes = index.store.document_hashes()
    assert len(hashes) == 7
    assert {doc_id for doc_id, (url, _) in hashes.items() if url.endswith("manual.pdf")} == {
        "manual-page-1",
        "manual-page-2",
        "manual-page-3",
    }
    assert all(len(digest) == 64 for _, digest in hashes.values())


def test_document_chunks_reads_one_document_in_order(make_index: MakeIndex) -> None:
    long_text = "\n\n".join(
        f"## Part {n}\n\n" + f"Paragraph {n} about the griffin kite's frame and string. " * 12
        for n in range(6)
    )
    pages = manual_pages()
    long_doc = Document(
        text="# Guide\n\n" + long_text,
        metadata={"url": "https://shop.example/guide", "title": "guide"},
        id_="guide",
    )
    index = make_index([*pages, long_doc, *library()])

    guide = index.store.document_chunks("guide")
    assert len(guide) > 2
    assert [number for number, _, _ in guide] == list(range(len(guide)))
    assert "Paragraph 0" in guide[0][1] and "Paragraph 5" in guide[-1][1]
    assert all(metadata["url"] == "https://shop.example/guide" for _, _, metadata in guide)
    # Pages of one PDF share a URL; each id reads its own page and its own metadata.
    [(_, text, metadata)] = index.store.document_chunks("manual-page-2")
    assert "page 2" in text and metadata["page"] == 2

    # An unknown or hostile id is data, not SQL, and finds nothing.
    for stranger in ("nope", "guide' OR '1'='1", "guide%", "gu_de", "x\x00y", "'" * 500):
        assert index.store.document_chunks(stranger) == []
    assert index.stats()["documents"] == 8
