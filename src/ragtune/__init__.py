"""ragtune: make an open LLM know your own knowledge, and show which route pays off.

from ragtune import WebReader, VectorStoreIndex
documents = WebReader().load_data(urls=["http://127.0.0.1:8000/products"])
index = VectorStoreIndex.from_documents(documents, persist_dir="./idx")
print(index.as_query_engine().query("What is the flavor of the dark energy potion?"))

Every public name loads when it is first used (PEP 562): ``import ragtune`` and
``ragtune --help`` must not pay for LanceDB, ONNX Runtime or trafilatura, and every
``import ragtune.x`` runs this module first.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ragtune.version import __version__

if TYPE_CHECKING:
    from ragtune.documents import Citation, Document, NodeWithScore, Response, TextNode
    from ragtune.errors import RagtuneError
    from ragtune.extract import ExtractedPage, extract_html
    from ragtune.index import VectorStoreIndex
    from ragtune.web import WebReader

# Each public name and the module that defines it.
_EXPORTS = {
    "Citation": "ragtune.documents",
    "Document": "ragtune.documents",
    "ExtractedPage": "ragtune.extract",
    "NodeWithScore": "ragtune.documents",
    "RagtuneError": "ragtune.errors",
    "Response": "ragtune.documents",
    "TextNode": "ragtune.documents",
    "VectorStoreIndex": "ragtune.index",
    "WebReader": "ragtune.web",
    "extract_html": "ragtune.extract",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ragtune' has no attribute {name!r}")
    if name == "VectorStoreIndex":
        # index.as_query_engine() builds the engine of the layer above, which the index
        # may not import: query/engine.py hands it down when imported, so it is imported
        # before anyone holds the class.
        import ragtune.query  # noqa: F401
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
