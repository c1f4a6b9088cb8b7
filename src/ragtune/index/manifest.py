"""ragtune.json: what makes a directory a ragtune index, and how it was built."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ragtune.atomic import write_json_atomic
from ragtune.errors import IndexNotFoundError, InvalidIndexError
from ragtune.url_options import redact, without_userinfo

MANIFEST = "ragtune.json"
FORMAT = "ragtune-index"
# 2: metadata became a JSON column (filters); the store and its table are named here.
VERSION = 2


@dataclass
class Manifest:
    embedder_path: str  # a model directory or an OpenAI-compatible endpoint spec, no key
    embedder_name: str
    dimensions: int
    chunk_size: int
    chunk_overlap: int
    embedder_backend: str = "torch"  # torch, onnx, onnx-int8 or openai
    store: str = "lancedb"  # or a postgresql:// URL, without its password or any secret
    table: str = "chunks"
    # Every metadata key a document in the index has had: filters on others are typos.
    metadata_keys: list[str] = field(default_factory=list)
    # What a cosine means in this corpus (ragtune.index.calibration.ScoreCalibration
    # as a dict), refreshed after every write; None in an index built before it existed.
    calibration: dict[str, Any] | None = None
    created_at: str = field(default_factory=lambda: _now())
    updated_at: str = field(default_factory=lambda: _now())
    format: str = FORMAT
    version: int = VERSION

    def save(self, directory: Path) -> None:
        """Write the manifest; the caller holds the index's write lock.

        Metadata keys already on disk are kept (a writer that read the manifest
        earlier must not drop the keys another one added since), and the store
        URL and embedder spec lose anything secret: the index keeps none.
        """
        self.updated_at = _now()
        self.metadata_keys = sorted(set(self.metadata_keys) | _recorded_keys(directory))
        self.store = _keepable(self.store)
        self.embedder_path = _keepable_embedder(self.embedder_path)
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
            data: Any = read_json(path)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError("wrong format marker")
            if data.get("version") != VERSION:
                raise InvalidIndexError(
                    f"{directory} is a version {data.get('version')} index; this ragtune "
                    f"reads version {VERSION} (rebuild it: ragtune ingest into a new directory)"
                )
            manifest = cls(**data)
        except InvalidIndexError:
            raise
        except (ValueError, TypeError, UnicodeDecodeError) as error:
            raise InvalidIndexError(
                f"{path} is damaged ({error}); repair it, or rebuild the index in a new directory"
            ) from None
        # An index written before secrets were kept out may hold one: it is not used
        # (secrets come from the environment), and the next save drops it.
        manifest.store = _keepable(manifest.store)
        manifest.embedder_path = _keepable_embedder(manifest.embedder_path)
        return manifest


def read_json(path: Path) -> Any:
    """One of an index's JSON files, parsed. Every kind of damage is a ValueError, for
    the caller to report as such: the parser raises RecursionError on deep nesting."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except OSError as error:  # a folder or an unreadable file where the JSON should be
        raise ValueError(f"cannot be read: {error.strerror or error}") from None


def _keepable(spec: str) -> str:
    """A store URL or embedder spec without its secrets; a local path as it is."""
    return redact(spec) if isinstance(spec, str) and "://" in spec else spec


def _keepable_embedder(spec: str) -> str:
    """An embedder spec without its secrets, nor a user name, which may be a token."""
    return without_userinfo(spec) if isinstance(spec, str) and "://" in spec else spec


def _recorded_keys(directory: Path) -> set[str]:
    """The metadata keys the manifest on disk lists; none if it is missing or unreadable."""
    try:
        keys = read_json(directory / MANIFEST)["metadata_keys"]
    except (ValueError, KeyError, TypeError):
        return set()
    return {key for key in keys if isinstance(key, str)} if isinstance(keys, list) else set()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- files.json: what each indexed file was, so an unchanged one is not read again ----

FILE_STATES = "files.json"
FILE_STATES_FORMAT = "ragtune-files"


@dataclass(frozen=True)
class FileState:
    """A file as it was when its documents were indexed: its size and modification
    time (as stat gives them), the SHA-256 of its bytes, and the id and content hash
    of every document it gave."""

    size: int
    mtime_ns: int
    sha256: str
    documents: dict[str, str] = field(default_factory=dict)


def read_file_states(directory: Path) -> dict[str, FileState]:
    """The recorded states by file URL; {} when there are none or the record is damaged:
    it only saves time, so a damaged one costs a re-read of every file, never an error."""
    path = directory / FILE_STATES
    if not path.exists():
        return {}
    try:
        data = read_json(path)
        if not isinstance(data, dict) or data.get("format") != FILE_STATES_FORMAT:
            return {}
        return {
            str(url): FileState(
                int(entry["size"]),
                int(entry["mtime_ns"]),
                str(entry["sha256"]),
                {str(k): str(v) for k, v in entry["documents"].items()},
            )
            for url, entry in data["files"].items()
        }
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}


def write_file_states(directory: Path, states: dict[str, FileState]) -> None:
    """Replace the record; the caller holds the write lock and has committed the
    documents the states name (a state never runs ahead of the index)."""
    write_json_atomic(
        directory / FILE_STATES,
        {
            "format": FILE_STATES_FORMAT,
            "version": 1,
            "files": {url: asdict(state) for url, state in sorted(states.items())},
        },
    )
