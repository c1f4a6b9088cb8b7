"""What the operator chose for ``ragtune serve``: the indexes, the address, the limits."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ragtune.errors import RagtuneError
from ragtune.questions import MAX_QUERY_CHARS

# As the library spells them (index/ranking.py, query/engine.py, query/grounding.py).
RetrievalMode = Literal["hybrid", "dense", "keyword"]
AnswerMode = Literal["generate", "extract", "auto"]
GroundingMode = Literal["strict", "mark", "off"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
INDEX_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_PORT = 8000
# A chat request carries a question and some history; a megabyte is generous.
MAX_BODY_BYTES = 1024 * 1024
# Uploaded files: the same cap as a local file read from a folder (extract/files.py).
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
# A conversation longer than this is not a chat a person is having.
MAX_MESSAGES = 200


@dataclass(frozen=True)
class IndexSpec:
    """One served index: ``name`` is its model id in ``/v1/models``; ``llm`` the model
    that answers over it (an ``--llm`` spec; None: the bundled model)."""

    name: str
    directory: Path
    llm: str | None = None


def parse_index_spec(value: str) -> IndexSpec:
    """``DIR`` or ``NAME=DIR``; a bare directory is named after its last component."""
    text = value.strip()
    if not text:
        raise RagtuneError("--index needs a directory (DIR or NAME=DIR)")
    name, separator, directory = text.partition("=")
    if not separator:
        directory = text
        name = Path(text).expanduser().resolve().name or "index"
        name = re.sub(r"[^A-Za-z0-9._-]", "-", name).lstrip("._-")[:64] or "index"
    if not INDEX_NAME.fullmatch(name):
        raise RagtuneError(
            f"index name {name[:80]!r} must be 1-64 letters, digits, '.', '_' or '-'"
        )
    if not directory.strip():
        raise RagtuneError(f"--index {name}= needs a directory after '='")
    return IndexSpec(name, Path(directory).expanduser())


@dataclass
class ServeConfig:
    """Everything ``create_app`` needs; the CLI fills it from its options."""

    indexes: list[IndexSpec]
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    # A file of hashed API keys (serve/auth.py); None: no keys, loopback only.
    api_key_file: Path | None = None
    # Requests a minute one key (or, without keys, one client address) may make.
    rate_limit_per_minute: int = 120
    # Ingestion through the server refuses private, loopback and link-local URLs
    # unless the deployment is trusted (net/address_guard.py).
    allow_private_urls: bool = False
    url_allow_networks: list[str] = field(default_factory=list)
    # Local folders may be ingested only from under this directory (None: not at all).
    files_root: Path | None = None
    # Where uploaded files and job records are kept: never under a served path.
    data_dir: Path | None = None
    cors_origins: list[str] = field(default_factory=list)
    max_body_bytes: int = MAX_BODY_BYTES
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_question_chars: int = MAX_QUERY_CHARS
    # Questions answered at once (llama.cpp parallel slots) and waiting beyond them;
    # a request that finds the queue full is answered 429 with Retry-After.
    parallel: int = 4
    queue_size: int = 16
    # Defaults of a question's retrieval and answer (a request may override them).
    top_k: int = 4
    mode: RetrievalMode = "hybrid"
    answer_mode: AnswerMode | None = None
    answer_tokens: int = 256
    grounding: GroundingMode = "strict"
    # Earlier turns of a conversation put into the prompt (as ``ragtune chat``).
    history_turns: int = 3
    max_messages: int = MAX_MESSAGES
    # How long uvicorn lets in-flight answers finish after SIGTERM.
    drain_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not self.indexes:
            raise RagtuneError("serve needs at least one --index")
        names = [spec.name for spec in self.indexes]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise RagtuneError(f"two indexes are named {duplicates[0]!r}; name them NAME=DIR")

    @property
    def loopback_only(self) -> bool:
        return self.host.strip("[]").lower() in LOOPBACK_HOSTS
