"""The guide's reference example, exactly as a user would type it, against the demo shop."""

from tests.helpers import POTION_PATH


def test_reference_snippet(shop_url: str, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    url = shop_url + "/products"
    from ragtune import WebReader, VectorStoreIndex  # noqa: I001  (as the guide writes it)

    documents = WebReader().load_data(urls=[url])
    index = VectorStoreIndex.from_documents(documents, persist_dir="./idx")
    response = index.as_query_engine().query("What is the flavor of the dark energy potion?")
    print(response.response)
    for node in response.source_nodes:
        print(node.score, node.metadata["url"])

    printed = capsys.readouterr().out
    assert "cherry cola" in printed.lower()
    assert url in printed
    assert (tmp_path / "idx" / "ragtune.json").exists()


def test_reference_snippet_on_the_product_page(shop_url: str) -> None:
    from ragtune import VectorStoreIndex, WebReader

    documents = WebReader().load_data(urls=[shop_url + POTION_PATH])
    index = VectorStoreIndex.from_documents(documents)
    response = index.as_query_engine().query("What is the flavor of the dark energy potion?")
    assert "cherry cola" in str(response).lower()
    assert response.source_nodes[0].metadata["url"] == shop_url + POTION_PATH
