"""ragtune.json: what makes a directory a ragtune index, and how it was built."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ragtune.errors import IndexNotFoundError, InvalidIndexError

MANIFEST = "ragtune.json"
FORMAT = "ragtune-index"
# 2: metadata became a JSON column (filters); the store and its table are named here.
VERSION = 2


@dataclass
class Manifest:
    embedder_path: str  # a model directory or an OpenAI-compatible endpoint spec
    embedder_name: str
    dimensions: int
    chunk_size: int
    chunk_overlap: int
    embedder_backend: str = "torch"  # torch, onnx, onnx-int8 or openai
    store: str = "lancedb"  # or a postgresql:// URL, without its password
    table: str = "chunks"
    # Every metadata key a document in the index has had: filters on others are typos.
    metadata_keys: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=lambda: _now())
    updated_at: str = field(default_factory=lambda: _now())
    format: str = FORMAT
    version: int = VERSION

    def save(self, directory: Path) -> None:
        self.updated_at = _now()
        write_json_atomic(directory / MANIFEST, asdict(self))

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        if not directory.exists():
            raise IndexNotFoundError(f"no index at {directory} (create one with `ragtune ingest`)")
        if not directory.is_dir():
            raise InvalidIndexError(f"{directory} is a file, not an index directory")
        path = directory / MANIFEST
        if not path.exists():
            raise InvalidIndexError(f"{directory} is not a ragtune index (no {MANIFEST})")
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError("wrong format marker")
            if data.get("version") != VERSION:
                raise InvalidIndexError(
                    f"{directory} is a version {data.get('version')} index; this ragtune "
                    f"reads version {VERSION} (rebuild it: ragtune ingest into a new directory)"
                )
            return cls(**data)
        except InvalidIndexError:
            raise
        except (ValueError, TypeError, UnicodeDecodeError) as error:
            raise InvalidIndexError(f"{path} is damaged ({error})") from None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
