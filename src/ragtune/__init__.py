"""ragtune: make an open LLM know your own knowledge, and show which route pays off.

from ragtune import WebReader, VectorStoreIndex
documents = WebReader().load_data(urls=["http://127.0.0.1:8000/products"])
index = VectorStoreIndex.from_documents(documents, persist_dir="./idx")
print(index.as_query_engine().query("What is the flavor of the dark energy potion?"))
"""

import logging

# The query layer sits above the index and hands VectorStoreIndex the engine that
# as_query_engine builds; importing any part of ragtune runs this first.
import ragtune.query  # noqa: F401
from ragtune.documents import Citation, Document, NodeWithScore, Response, TextNode
from ragtune.errors import RagtuneError
from ragtune.extract import ExtractedPage, extract_html
from ragtune.index import VectorStoreIndex
from ragtune.version import __version__
from ragtune.web import WebReader

# A library logs; the application decides where logs go (the CLI reports skips itself).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Citation",
    "Document",
    "ExtractedPage",
    "NodeWithScore",
    "RagtuneError",
    "Response",
    "TextNode",
    "VectorStoreIndex",
    "WebReader",
    "__version__",
    "extract_html",
]
