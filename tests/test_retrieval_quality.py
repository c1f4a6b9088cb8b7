"""Ten facts from the demo shop, each on one product page, asked in the words a user would use."""

import pytest

from ragtune import VectorStoreIndex

FACTS = [
    ("How much does the Griffin Kite cost?", "griffin-kite"),
    ("Who illustrated the Mapmaker's Atlas?", "mapmakers-atlas"),
    ("How long does the sand take to run through the hourglass?", "time-turner-hourglass"),
    ("What is the maximum weight the hammock can hold?", "cloud-walker-hammock"),
    ("Which card game won the Golden Meeple award?", "troll-bridge-toll-kit"),
    ("Which customer walked across hot coals at a festival?", "dragonscale-boots"),
    ("How many Scoville units is the hot sauce?", "basilisk-hot-sauce"),
    ("Which product is cut by hand in Portland?", "sunstone-pendant"),
    ("What is the price of the Bottomless Backpack?", "bottomless-backpack"),
    ("Which speaker helps a baby sleep through the night?", "mermaid-song-shell"),
]


@pytest.mark.parametrize(("question", "slug"), FACTS)
def test_right_page_in_top_3(
    shop_index: VectorStoreIndex, shop_url: str, question: str, slug: str
) -> None:
    nodes = shop_index.as_retriever(similarity_top_k=3).retrieve(question)
    urls = [node.metadata["url"] for node in nodes]
    assert f"{shop_url}/products/{slug}" in urls, (question, urls)
