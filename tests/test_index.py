import json
import shutil
from pathlib import Path

import pytest

from ragtune import Document, VectorStoreIndex
from ragtune.errors import IndexNotFoundError, InvalidIndexError, InvalidQueryError, RagtuneError
from ragtune.index.ranking import VectorIndexRetriever
from ragtune.index.vector_index import InsertStats


def documents() -> list[Document]:
    return [
        Document(
            text="# Alpha\n\nAlpha widgets are green and cost $3.",
            metadata={"url": "http://t/a", "title": "Alpha"},
        ),
        Document(
            text="# Beta\n\nBeta gadgets are purple and weigh 2 kg.",
            metadata={"url": "http://t/b", "title": "Beta"},
        ),
    ]


def test_persist_load_and_retrieve(tmp_path: Path) -> None:
    VectorStoreIndex.from_documents(documents(), persist_dir=tmp_path / "idx")
    index = VectorStoreIndex.load(tmp_path / "idx")
    assert index.stats()["documents"] == 2
    [best] = index.as_retriever(similarity_top_k=1).retrieve("What colour are beta gadgets?")
    assert best.metadata["url"] == "http://t/b"
    assert "purple" in best.text
    assert 0.0 < best.score <= 1.0


def test_reingesting_a_url_replaces_its_chunks(tmp_path: Path) -> None:
    index = VectorStoreIndex.from_documents(documents(), persist_dir=tmp_path / "idx")
    before = index.stats()["chunks"]
    changed = Document(
        text="# Alpha\n\nAlpha widgets are now blue.",
        metadata={"url": "http://t/a", "title": "Alpha"},
    )
    index = VectorStoreIndex.from_documents(
        [changed, *documents()[1:]], persist_dir=tmp_path / "idx"
    )
    assert index.stats() == {**index.stats(), "documents": 2, "chunks": before}
    texts = [n.text for n in index.as_retriever(similarity_top_k=10).retrieve("alpha widgets")]
    assert any("blue" in t for t in texts) and not any("green" in t for t in texts)


def test_in_memory_index_without_persist_dir() -> None:
    index = VectorStoreIndex.from_documents(documents())
    assert index.persist_dir.exists()
    assert (
        index.as_retriever(similarity_top_k=1).retrieve("alpha")[0].metadata["url"] == "http://t/a"
    )


def test_no_documents_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RagtuneError, match="no documents"):
        VectorStoreIndex.from_documents([], persist_dir=tmp_path / "idx")
    assert not (tmp_path / "idx").exists()


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="no index at"):
        VectorStoreIndex.load(tmp_path / "nowhere")


def test_foreign_directory_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InvalidIndexError, match="not a ragtune index"):
        VectorStoreIndex.load(tmp_path)
    with pytest.raises(InvalidIndexError, match="not a ragtune index"):
        VectorStoreIndex.from_documents(documents(), persist_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    "manifest", ["{not json", json.dumps({"format": "other"}), json.dumps([1, 2]), "\x00\xff"]
)
def test_corrupt_manifest(tmp_path: Path, manifest: str) -> None:
    (tmp_path / "ragtune.json").write_text(manifest, encoding="utf-8", errors="surrogateescape")
    with pytest.raises(InvalidIndexError):
        VectorStoreIndex.load(tmp_path)


def test_damaged_store_is_reported(tmp_path: Path) -> None:
    VectorStoreIndex.from_documents(documents(), persist_dir=tmp_path / "idx")
    shutil.rmtree(tmp_path / "idx" / "lancedb")
    (tmp_path / "idx" / "lancedb").write_text("garbage")
    with pytest.raises(InvalidIndexError, match="damaged"):
        VectorStoreIndex.load(tmp_path / "idx")


@pytest.mark.parametrize("question", ["", "   \n\t", "x" * 5000])
def test_bad_questions(tmp_path: Path, question: str) -> None:
    index = VectorStoreIndex.from_documents(documents(), persist_dir=tmp_path / "idx")
    with pytest.raises(InvalidQueryError):
        index.as_retriever().retrieve(question)


def test_a_retriever_ranks_a_store_with_an_embedder_not_an_index(tmp_path: Path) -> None:
    index = VectorStoreIndex.from_documents(documents(), persist_dir=tmp_path / "idx")
    retriever = VectorIndexRetriever(
        index.store, index.embedder, 2, metadata_keys=index.manifest.metadata_keys
    )
    question = "What colour are beta gadgets?"
    found = [(n.node_id, n.score) for n in retriever.retrieve(question)]
    assert found == [(n.node_id, n.score) for n in index.as_retriever(2).retrieve(question)]
    with pytest.raises(InvalidQueryError, match="unknown filter key 'colour'"):
        VectorIndexRetriever(index.store, index.embedder, filters={"colour": "x"}, metadata_keys=())


def test_a_file_as_index(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidIndexError, match="is a file"):
        VectorStoreIndex.load(tmp_path / "file")


def test_every_hybrid_node_carries_its_embedding_similarity(tmp_path: Path) -> None:
    # Keyword-only hits have no dense rank, yet the query engine cuts on similarity:
    # each node must carry the true cosine between the question and its embedded text.
    index = VectorStoreIndex.from_documents(documents(), persist_dir=tmp_path / "idx")
    question = "purple gadgets"
    query_vector = index.embedder.embed_query(question)
    nodes = index.as_retriever(similarity_top_k=5).retrieve(question)
    assert len(nodes) == 2
    for node in nodes:
        header = node.metadata["header"]
        embedded = index.embedder.embed_query(f"{header}\n\n{node.text}" if header else node.text)
        assert node.metadata["similarity"] == pytest.approx(
            float(query_vector @ embedded), abs=1e-4
        )


def test_unchanged_documents_and_chunks_are_never_embedded_twice(tmp_path: Path) -> None:
    paragraphs = [f"Paragraph {i} tells how the keeper trimmed lamp number {i}." for i in range(40)]
    page = Document(
        text="# Log\n\n" + "\n\n".join(paragraphs), metadata={"url": "http://t/log", "title": "Log"}
    )
    index = VectorStoreIndex.from_documents(
        [page, *documents()], persist_dir=tmp_path / "idx", chunk_size=48
    )
    first = index.last_insert
    assert first.embedded == first.chunks > 5 and first.unchanged == 0
    files_before = sorted(p.name for p in (tmp_path / "idx").rglob("*"))

    again = VectorStoreIndex.from_documents([page, *documents()], persist_dir=tmp_path / "idx")
    assert again.last_insert == InsertStats(documents=3, unchanged=3, chunks=0, embedded=0)
    assert sorted(p.name for p in (tmp_path / "idx").rglob("*")) == files_before  # nothing written

    paragraphs[-1] = "The last paragraph now says the lamp was replaced by an LED in 2019."
    edited = Document(
        text="# Log\n\n" + "\n\n".join(paragraphs), metadata={"url": "http://t/log", "title": "Log"}
    )
    changed = VectorStoreIndex.from_documents([edited, *documents()], persist_dir=tmp_path / "idx")
    stats = changed.last_insert
    assert stats.unchanged == 2  # the other two documents are left alone
    assert stats.chunks >= first.chunks - 2  # the edited page is rewritten whole ...
    assert 1 <= stats.embedded <= 3  # ... but only chunks around the edit are embedded
    assert changed.stats()["chunks"] == stats.chunks + 2
    [best] = changed.as_retriever(similarity_top_k=1).retrieve(
        "When was the lamp replaced by an LED?"
    )
    assert "2019" in best.text


def test_a_long_document_is_hashed_once_not_once_per_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hashing the whole text for every chunk made a 40 MB text take hours (chunks x size).
    from ragtune.index import vector_index

    index = VectorStoreIndex.from_documents(documents(), persist_dir=tmp_path / "index")
    hashed: list[int] = []

    def counting_hash(text: str) -> str:
        hashed.append(len(text))
        return "h"

    monkeypatch.setattr(vector_index, "content_hash", counting_hash)
    long = Document(text="numbat burrows. " * 5000, metadata={"url": "file:///long.md"})
    chunks = index._chunks_of(long)
    assert len(chunks) > 50
    assert hashed == [len(long.text)]
    assert {chunk.metadata["content_hash"] for chunk in chunks} == {"h"}
