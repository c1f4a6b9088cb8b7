"""End-to-end answering with the bundled SmolLM2 through llama.cpp."""

from pathlib import Path

import pytest
from tests.helpers import POTION_PATH

from ragtune import Document, NodeWithScore, TextNode, VectorStoreIndex
from ragtune.errors import InvalidQueryError, ModelNotFoundError
from ragtune.llm import load_llm
from ragtune.query.prompt import pack_prompt


@pytest.fixture(scope="module")
def llm():  # type: ignore[no-untyped-def]
    return load_llm()


def test_demo_question_is_answered_from_the_potion_page(
    shop_index: VectorStoreIndex, shop_url: str, llm
) -> None:
    response = shop_index.as_query_engine(llm=llm).query(
        "What is the flavor of the dark energy potion?"
    )
    assert "cherry cola" in response.response.lower()
    assert shop_url + POTION_PATH in [n.metadata["url"] for n in response.source_nodes]
    assert str(response) == response.response
    assert response.metadata["prompt_tokens"] < llm.context_window


def test_streaming_yields_the_same_answer_piece_by_piece(shop_index: VectorStoreIndex, llm) -> None:
    engine = shop_index.as_query_engine(llm=llm)
    question = "How much does the Griffin Kite cost?"
    tokens, streamed = engine.stream(question)
    pieces = list(tokens)
    # Grounded answers stream sentence by sentence (each once it is checked).
    assert 1 <= len(pieces) <= len(streamed.sentences)
    assert streamed.response == "".join(pieces).strip()
    assert "29.50" in streamed.response


def test_prompt_never_overflows_the_window(llm) -> None:
    # Sources totalling ten times the window: packing keeps what fits, in the model's tokens.
    paragraph = "The lighthouse workshop packs every order by hand in recyclable paper. " * 30
    nodes = [
        NodeWithScore(
            TextNode(text=f"Passage {i}. {paragraph}", metadata={"url": f"http://t/{i}"}), 1.0
        )
        for i in range(60)
    ]
    total = sum(llm.count_tokens(n.text) for n in nodes)
    assert total > 10 * llm.context_window
    packed = pack_prompt("Who packs the orders?", nodes, llm.count_tokens, llm.context_window, 128)
    assert 0 < len(packed.sources) < len(nodes)
    prompt_text = "\n".join(m["content"] for m in packed.messages)
    assert llm.count_tokens(prompt_text) + 128 <= llm.context_window
    answer = llm.chat(packed.messages, max_tokens=16)  # llama.cpp itself accepts the prompt
    assert isinstance(answer, str)


def test_empty_question_is_refused_before_any_work(shop_index: VectorStoreIndex) -> None:
    with pytest.raises(InvalidQueryError, match="empty"):
        shop_index.as_query_engine().query("  ")


def test_the_question_is_checked_when_retrieval_searches_a_rewrite(
    shop_index: VectorStoreIndex, tmp_path: Path
) -> None:
    # A chat retrieves with a rewrite of the question; the model would still be
    # asked the question itself, so it is checked too, before the model is loaded.
    engine = shop_index.as_query_engine(llm=str(tmp_path / "never-loaded.gguf"))
    with pytest.raises(InvalidQueryError, match="the question is empty"):
        engine.query("  ", retrieval_query="dark energy potion flavor")
    with pytest.raises(InvalidQueryError, match="the question is 4001 characters"):
        engine.stream("x" * 4001, retrieval_query="dark energy potion flavor")


def test_missing_and_corrupt_model_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_llm(str(tmp_path / "missing.gguf"))
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"not a model at all" * 100)
    with pytest.raises(ModelNotFoundError, match="not a GGUF"):
        load_llm(str(corrupt))
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF" + bytes(64))
    index = VectorStoreIndex.from_documents(
        [Document(text="Some text.", metadata={"url": "http://t/x"})]
    )
    with pytest.raises(ModelNotFoundError, match="cannot load"):
        index.as_query_engine(llm=str(truncated)).query("What text?")


def test_near_duplicate_passages_reach_the_prompt_once() -> None:
    # The same page published under two URLs: retrieval finds both, the prompt quotes one.
    text = (
        "The lighthouse workshop ships every telescope in a wooden crate lined with wool. "
        "Delivery takes nine days to any harbour town."
    )
    index = VectorStoreIndex.from_documents(
        [
            Document(text=text, metadata={"url": "http://t/a", "title": "Shipping"}),
            Document(text=text, metadata={"url": "http://t/mirror/a", "title": "Shipping"}),
            Document(
                text="Telescopes are polished by hand and tested on a clear night.",
                metadata={"url": "http://t/b", "title": "Telescopes"},
            ),
        ]
    )
    nodes = index.as_retriever(similarity_top_k=5).retrieve("How are telescopes shipped?")
    assert {"http://t/a", "http://t/mirror/a"} <= {n.metadata["url"] for n in nodes}

    def words(value: str) -> int:
        return len(value.split())

    packed = pack_prompt("How are telescopes shipped?", nodes, words, 2048, 128)
    urls = [n.metadata["url"] for n in packed.sources]
    assert len({"http://t/a", "http://t/mirror/a"} & set(urls)) == 1
    assert urls[0] == nodes[0].metadata["url"]  # the better-ranked copy is the one kept
    assert "http://t/b" in urls
    assert packed.duplicates_dropped == 1
    assert packed.messages[-1]["content"].count("wooden crate") == 1


def test_identical_text_is_a_duplicate_without_vectors() -> None:
    def node(text: str, url: str, score: float) -> NodeWithScore:
        return NodeWithScore(TextNode(text=text, metadata={"url": url}), score)

    nodes = [
        node("Open daily, 9 to 5.", "http://t/1", 1.0),
        node("open  DAILY 9 to 5", "http://t/2", 0.9),
        node("Closed on Sundays.", "http://t/3", 0.8),
    ]
    packed = pack_prompt("When is it open?", nodes, lambda t: len(t.split()), 2048, 128)
    assert [n.metadata["url"] for n in packed.sources] == ["http://t/1", "http://t/3"]
