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
    from ragtune.index.filters import MetadataFilter, MetadataFilters
    from ragtune.query.chat import ChatSession
    from ragtune.sync import SyncResult
    from ragtune.sync import sync as sync_index
    from ragtune.web import WebReader
    from ragtune.web.crawl_events import CrawlReport

# Each public name: the module that defines it and its name there.
#
# ``sync_index`` is ``ragtune.sync.sync`` under another name. ``ragtune.sync`` is the
# module, and has to stay one: importing a submodule sets the package's attribute of
# that name, so a function exported as ``ragtune.sync`` would be the function or the
# module depending on what was imported first, and ``import ragtune.sync as s`` or
# ``ragtune.sync.sync(...)`` would break whenever it was the function.
_EXPORTS: dict[str, tuple[str, str]] = {
    "ChatSession": ("ragtune.query.chat", "ChatSession"),
    "Citation": ("ragtune.documents", "Citation"),
    "CrawlReport": ("ragtune.web.crawl_events", "CrawlReport"),
    "Document": ("ragtune.documents", "Document"),
    "ExtractedPage": ("ragtune.extract", "ExtractedPage"),
    "MetadataFilter": ("ragtune.index.filters", "MetadataFilter"),
    "MetadataFilters": ("ragtune.index.filters", "MetadataFilters"),
    "NodeWithScore": ("ragtune.documents", "NodeWithScore"),
    "RagtuneError": ("ragtune.errors", "RagtuneError"),
    "Response": ("ragtune.documents", "Response"),
    "SyncResult": ("ragtune.sync", "SyncResult"),
    "TextNode": ("ragtune.documents", "TextNode"),
    "VectorStoreIndex": ("ragtune.index", "VectorStoreIndex"),
    "WebReader": ("ragtune.web", "WebReader"),
    "extract_html": ("ragtune.extract", "extract_html"),
    "sync_index": ("ragtune.sync", "sync"),
}

# A library logs; the application decides where logs go (the CLI reports skips itself).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "ChatSession",
    "Citation",
    "CrawlReport",
    "Document",
    "ExtractedPage",
    "MetadataFilter",
    "MetadataFilters",
    "NodeWithScore",
    "RagtuneError",
    "Response",
    "SyncResult",
    "TextNode",
    "VectorStoreIndex",
    "WebReader",
    "__version__",
    "extract_html",
    "sync_index",
]


def __getattr__(name: str) -> Any:
    export = _EXPORTS.get(name)
    if export is None:
        raise AttributeError(f"module 'ragtune' has no attribute {name!r}")
    module, attribute = export
    if name == "VectorStoreIndex":
        # index.as_query_engine() builds the engine of the layer above, which the index
        # may not import: query/engine.py hands it down when imported, so it is imported
        # before anyone holds the class.
        import ragtune.query  # noqa: F401
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
