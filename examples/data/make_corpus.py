"""Write examples/data/corpus.txt: plain text about the demo shop, to train a tokenizer or a
small model from scratch on (``ragtune tokenizer train``, ``ragtune pretrain``).

The text comes from the shop's catalogue (examples/shop/products.json) and the handbook
(examples/docs), in a fixed order with no randomness, so the same inputs always give the
same file. The file is checked in; after changing either input, run

    python examples/data/make_corpus.py           # rewrite corpus.txt
    python examples/data/make_corpus.py --check   # exit 1 if corpus.txt is out of date

Standard library only: it runs before ragtune is installed.
"""

from __future__ import annotations

import json
import sys
from html.parser import HTMLParser
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1]
CATALOGUE = EXAMPLES / "shop" / "products.json"
HANDBOOK = EXAMPLES / "docs"
CORPUS = EXAMPLES / "data" / "corpus.txt"
SHOP = "The Curious Cauldron"
# Ways of stating one catalogue fact: the same facts in several phrasings give a model
# trained from scratch something to generalise over, not one sentence to memorise.
FACT_PHRASINGS = (
    "The {key} of the {name} is {value}.",
    "{name}: {key}, {value}.",
    "Asked about the {key} of the {name}, the shop says: {value}.",
)


class _TextOnly(HTMLParser):
    """The visible text of an HTML page, one line per block."""

    BLOCKS = frozenset({"p", "h1", "h2", "h3", "li", "tr", "title"})

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self._current: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        self._current.append(data)

    def _flush(self) -> None:
        text = " ".join("".join(self._current).split())
        if text:
            self.lines.append(text)
        self._current = []

    def text(self) -> str:
        self._flush()
        return "\n".join(self.lines)


def html_text(html: str) -> str:
    parser = _TextOnly()
    parser.feed(html)
    parser.close()
    return parser.text()


def product_article(product: dict) -> str:
    """A product as a short article: what its page says, in sentences."""
    name = product["name"]
    lines = [
        name,
        f"{name} is sold by {SHOP} in the {product['category']} category for {product['price']}.",
        product["summary"],
        product["description"],
    ]
    lines += [f"{key}: {value}." for key, value in product["facts"].items()]
    for reviewer, stars, review in product["reviews"]:
        lines.append(f'{reviewer} gave the {name} {stars} out of 5 stars and wrote: "{review}"')
    return "\n".join(lines)


def fact_sentences(products: list[dict]) -> str:
    """Every catalogue fact in each phrasing, product by product."""
    sentences = []
    for phrasing in FACT_PHRASINGS:
        for product in products:
            for key, value in product["facts"].items():
                sentences.append(
                    phrasing.format(key=key.lower(), name=product["name"], value=value)
                )
            sentences.append(
                phrasing.format(key="price", name=product["name"], value=product["price"])
            )
    return "\n".join(sentences)


def questions_and_answers(products: list[dict]) -> str:
    """A question and its answer for every catalogue fact: the shape of a chat turn."""
    pairs = []
    for product in products:
        name = product["name"]
        pairs.append(f"Question: How much does the {name} cost?\nAnswer: {product['price']}.")
        pairs.append(f"Question: What is the {name}?\nAnswer: {product['summary']}")
        for key, value in product["facts"].items():
            pairs.append(f"Question: What is the {key.lower()} of the {name}?\nAnswer: {value}.")
    return "\n\n".join(pairs)


def category_overviews(products: list[dict]) -> list[str]:
    """One paragraph per category, listing its products with their prices."""
    categories = sorted({product["category"] for product in products})
    overviews = []
    for category in categories:
        members = [p for p in products if p["category"] == category]
        listed = "; ".join(f"the {p['name']} at {p['price']}" for p in members)
        overviews.append(f"In {category}, {SHOP} sells {len(members)} products: {listed}.")
    return overviews


def handbook_texts() -> list[str]:
    """Each handbook page as text, in path order (HTML reduced to its visible text)."""
    texts = []
    for path in sorted(HANDBOOK.rglob("*")):
        if path.suffix == ".html":
            texts.append(html_text(path.read_text(encoding="utf-8")))
        elif path.suffix in (".md", ".txt"):
            texts.append(path.read_text(encoding="utf-8").strip())
    return texts


def build_corpus() -> str:
    products = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    parts = [product_article(product) for product in products]
    parts += category_overviews(products)
    parts.append(fact_sentences(products))
    parts.append(questions_and_answers(products))
    parts += handbook_texts()
    return "\n\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    corpus = build_corpus()
    if argv == ["--check"]:
        if CORPUS.read_text(encoding="utf-8") != corpus:
            print(f"{CORPUS} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    if argv:
        print("usage: make_corpus.py [--check]", file=sys.stderr)
        return 2
    CORPUS.write_text(corpus, encoding="utf-8")
    print(f"wrote {CORPUS} ({len(corpus.encode()):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
