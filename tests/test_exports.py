"""The names ``ragtune`` exports: each resolves to the object of the module defining it,
``dir(ragtune)`` lists them, and every ``from ragtune import ...`` the docs show works.

``import ragtune`` stays light whatever is exported (tests/test_startup.py).
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ragtune

ROOT = Path(__file__).resolve().parents[1]
DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# from ragtune import A, B  /  from ragtune import (A, B, ...) over several lines
FROM_RAGTUNE = re.compile(r"^\s*from ragtune import (\([^)]*\)|[^\n]+)", re.MULTILINE)

# What a user imports, as the README and docs name it: a new public name joins __all__.
EXPECTED = {
    "ChatSession": "ragtune.query.chat",
    "Citation": "ragtune.documents",
    "CrawlReport": "ragtune.web.crawl_events",
    "Document": "ragtune.documents",
    "ExtractedPage": "ragtune.extract.html",
    "MetadataFilter": "ragtune.index.filters",
    "MetadataFilters": "ragtune.index.filters",
    "NodeWithScore": "ragtune.documents",
    "RagtuneError": "ragtune.errors",
    "Response": "ragtune.documents",
    "SyncResult": "ragtune.sync",
    "TextNode": "ragtune.documents",
    "VectorStoreIndex": "ragtune.index.vector_index",
    "WebReader": "ragtune.web.reader",
    "extract_html": "ragtune.extract.html",
}


def documented_imports() -> set[str]:
    """Every name the docs import with ``from ragtune import ...``."""
    names: set[str] = set()
    for page in DOC_PAGES:
        for match in FROM_RAGTUNE.finditer(page.read_text(encoding="utf-8")):
            clause = match.group(1).strip("()").split("#")[0]
            for part in clause.replace("\n", ",").split(","):
                name = part.split(" as ")[0].strip()
                if name:
                    names.add(name)
    return names


def test_all_lists_the_public_names() -> None:
    assert set(ragtune.__all__) == {*EXPECTED, "sync_index", "__version__"}
    assert ragtune.__all__ == sorted(ragtune.__all__)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_name_is_the_defining_modules_object(name: str) -> None:
    exported = getattr(ragtune, name)
    assert exported.__module__ == EXPECTED[name]
    assert exported is getattr(importlib.import_module(EXPECTED[name]), name)


def test_dir_lists_every_exported_name() -> None:
    assert set(ragtune.__all__) <= set(dir(ragtune))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        ragtune.NoSuchThing  # noqa: B018
    with pytest.raises(ImportError):
        exec("from ragtune import NoSuchThing", {})


def test_sync_index_is_the_sync_function_and_ragtune_sync_stays_the_module() -> None:
    """Whichever is imported first, ``ragtune.sync`` is the module and ``sync_index`` its
    ``sync``: in a fresh interpreter each time, since the first import decides."""
    orders = (
        "import ragtune.sync\nfrom ragtune import sync_index",
        "from ragtune import sync_index\nimport ragtune.sync",
        "from ragtune import sync_index\nimport ragtune.sync as s\nassert s.sync is sync_index",
    )
    check = (
        "\nimport types, ragtune"
        "\nfrom ragtune import sync"
        "\nassert isinstance(ragtune.sync, types.ModuleType) and sync is ragtune.sync"
        "\nassert sync_index is ragtune.sync.sync and callable(sync_index)"
        "\nassert ragtune.SyncResult is ragtune.sync.SyncResult"
    )
    for order in orders:
        result = subprocess.run(
            [sys.executable, "-c", order + check], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{order}\n{result.stderr}"


def test_every_name_the_docs_import_from_ragtune_exists() -> None:
    """A doc page's ``from ragtune import X`` works: X is exported or a submodule."""
    documented = documented_imports()
    assert {"WebReader", "VectorStoreIndex"} <= documented  # the README's first example
    missing = []
    for name in sorted(documented):
        try:
            exec(f"from ragtune import {name}", {})
        except ImportError:
            missing.append(name)
    assert missing == [], f"the docs import these from ragtune, which has none: {missing}"
