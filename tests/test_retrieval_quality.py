"""Ten facts from the demo shop, each on one product page, asked in the words a user would use."""

import pytest
from tests.helpers import SHOP_FACTS

from ragtune import VectorStoreIndex


@pytest.mark.parametrize(("question", "slug"), SHOP_FACTS)
def test_right_page_in_top_3(
    shop_index: VectorStoreIndex, shop_url: str, question: str, slug: str
) -> None:
    nodes = shop_index.as_retriever(similarity_top_k=3).retrieve(question)
    urls = [node.metadata["url"] for node in nodes]
    assert f"{shop_url}/products/{slug}" in urls, (question, urls)
