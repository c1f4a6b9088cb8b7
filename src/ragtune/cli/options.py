"""Option types that several commands share, so each reads and validates the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

# The choices as the library spells them (index/ranking.py, query/engine.py,
# query/grounding.py, web/reader.py, web/urls.py, extract/documents.py,
# scale/engine.py), written out
# rather than imported: those modules load NumPy, LanceDB, the web stack and the
# extractors, which ``ragtune --help`` must not wait for. tests/test_startup.py holds
# each copy equal to the library's type.
RetrievalMode = Literal["hybrid", "dense", "keyword"]
AnswerMode = Literal["generate", "extract", "auto"]
GroundingMode = Literal["strict", "mark", "off"]
RenderMode = Literal["never", "auto", "always"]
CrawlScope = Literal["path", "host", "domain"]
HtmlExtractor = Literal["default", "fast", "best"]
Engine = Literal["local", "ray"]  # scale/engine.py

IndexOption = Annotated[Path, typer.Option("--index", "-i", help="Index directory.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
EngineOption = Annotated[
    Engine,
    typer.Option(
        "--engine",
        help="Where pages and files are extracted and chunks embedded: local (this process) "
        "or ray (a Ray cluster; needs the ray extra). The index is the same either way.",
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        metavar="ADDR",
        help="With --engine ray: the cluster to join, HOST:PORT (its head), ray://HOST:PORT "
        "or auto. Default: start Ray on this machine for this run.",
    ),
]
# A Literal type: typer offers exactly the modes the index knows and refuses any other.
ModeOption = Annotated[
    RetrievalMode, typer.Option("--mode", help="hybrid (keyword + vector), dense or keyword.")
]
TopKOption = Annotated[
    int, typer.Option("--top-k", "-k", min=1, max=100, help="Passages to retrieve.")
]
FilterOption = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        help="Only passages whose metadata match: key=value, key!=value, key>=value "
        "(also >, <, <=), key^=prefix, key=a|b; url, title, site or any metadata key "
        "(repeatable; all must hold).",
    ),
]
MmrOption = Annotated[
    bool, typer.Option("--mmr", help="Diversify: maximal marginal relevance re-ranking.")
]
GroundingOption = Annotated[
    GroundingMode,
    typer.Option(
        "--grounding",
        help="Check each answer sentence against the sources: strict drops unsupported "
        "sentences, mark keeps them flagged (in --json), off prints the model's text as written.",
    ),
]
AnswerModeOption = Annotated[
    AnswerMode | None,
    typer.Option(
        "--answer",
        help="generate (the LLM writes it), extract (the best source sentence, quoted; no "
        "LLM), auto (generate, and extract when grounding keeps no sentence). Default: "
        "extract with the bundled model, auto with an --llm.",
    ),
]
AnswerTokensOption = Annotated[
    int, typer.Option(min=1, max=4096, help="The longest answer, in the model's tokens.")
]
