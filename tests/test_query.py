"""End-to-end answering with the bundled SmolLM2 through llama.cpp."""

import pytest
from tests.conftest import POTION_PATH

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
    assert len(pieces) > 3
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
