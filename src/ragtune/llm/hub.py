"""GGUF models from the Hugging Face Hub: ``hf://REPO[@REVISION]/FILE.gguf``.

huggingface_hub does the transfer and owns the cache: the endpoint (``HF_ENDPOINT``), the
cache folder (``HF_HOME``, ``HF_HUB_CACHE``), ``HF_HUB_OFFLINE``, the token (``HF_TOKEN``
or ``hf auth login``; sent to the Hub, never shown or written by ragtune), retries that
resume a dropped transfer with a Range request, and its progress bar (off when stderr is
not a terminal or ``HF_HUB_DISABLE_PROGRESS_BARS`` is set). huggingface_hub reads those
variables when it is first imported, so they must be set before.

What it does not do on a plain HTTP transfer is check the file against the checksum the
Hub states for it (the SHA-256 in the ETag of an LFS file). So a pull goes through a
staging cache inside the repository's cache folder, and only a file whose checksum, size
and GGUF header are right is moved into the cache's own layout (``blobs/SHA256``, the
``snapshots/COMMIT/FILE`` link, ``refs/REVISION``): a damaged download is refused and
never becomes a file that ``--llm`` would load, even if the process is killed halfway.

Using a model is offline-first: ``--llm hf://...`` loads the cached copy with no request
at all (pull again to update a branch such as ``main``); only a file that is not cached
is downloaded, the same checked way, and with ``HF_HUB_OFFLINE=1`` that is an error
that says how to pull it.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import httpx2
from huggingface_hub import (
    CacheNotFound,
    constants,
    get_hf_file_metadata,
    get_token,
    hf_hub_download,
    hf_hub_url,
    parse_hf_uri,
    scan_cache_dir,
    try_to_load_from_cache,
)
from huggingface_hub.errors import (
    FileMetadataError,
    GatedRepoError,
    HfHubHTTPError,
    HfUriError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import tqdm as hub_tqdm
from huggingface_hub.utils import validate_repo_id

from ragtune.atomic import write_failure, write_text_atomic
from ragtune.errors import LLMConfigError, ModelNotFoundError, one_line
from ragtune.llm.gguf_tokenizer import GGUF_MAGIC
from ragtune.terminal import printable
from ragtune.url_options import redact

HUB_SCHEME = "hf://"
DEFAULT_REVISION = "main"
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# A branch, a tag or refs/pr/N: it names a file under refs/, so no ".." and no "/" first.
_REVISION = re.compile(r"[\w.-]+(?:/[\w.-]+)*")
_STAGING = ".ragtune-staging"
_HASH_CHUNK = 8 * 2**20


@dataclass(frozen=True)
class HubFile:
    """One GGUF file of a model repository on the Hub, at a branch, tag or commit."""

    repo: str  # owner/name
    filename: str  # path inside the repository, ending in .gguf
    revision: str = DEFAULT_REVISION

    @property
    def uri(self) -> str:
        """The ``--llm`` spec for this file: ``hf://REPO[@REVISION]/FILE``."""
        at = "" if self.revision == DEFAULT_REVISION else f"@{self.revision}"
        return f"{HUB_SCHEME}{self.repo}{at}/{self.filename}"

    @property
    def pull_command(self) -> str:
        """The command that puts this file in the cache."""
        at = [] if self.revision == DEFAULT_REVISION else ["--revision", self.revision]
        return shlex.join(["ragtune", "models", "pull", self.repo, self.filename, *at])


@dataclass(frozen=True)
class CachedGGUF:
    """A GGUF file in the Hugging Face cache, under the spec that loads it."""

    uri: str
    path: Path
    size: int


def hub_file(repo: str, filename: str, revision: str | None = None) -> HubFile:
    """A checked ``HubFile``; LLMConfigError names what is wrong with a name.

    The names become paths in the cache, so a ``..`` or an absolute path is refused,
    and the file must be a ``.gguf``: ragtune runs GGUF models from the Hub.
    """
    try:
        validate_repo_id(repo)
        valid_repo = repo.count("/") == 1  # huggingface_hub also accepts a bare NAME
    except HFValidationError:
        valid_repo = False
    if not valid_repo:
        raise LLMConfigError(f"{repo!r} is not a Hugging Face repository id (expected OWNER/NAME)")
    path = PurePosixPath(filename)
    if not filename or path.is_absolute() or ".." in path.parts or "\\" in filename:
        raise LLMConfigError(f"{filename!r} is not a file path inside a repository")
    if path.suffix.lower() != ".gguf":
        raise LLMConfigError(f"{filename!r} is not a .gguf file; ragtune runs GGUF models")
    revision = revision or DEFAULT_REVISION
    if not _REVISION.fullmatch(revision) or ".." in revision.split("/"):
        raise LLMConfigError(f"{revision!r} is not a branch, tag or commit")
    return HubFile(repo=repo, filename=str(path), revision=revision)


def parse_hub_uri(spec: str) -> HubFile:
    """The file ``hf://REPO[@REVISION]/FILE.gguf`` names (huggingface_hub's own URI form)."""
    try:
        uri = parse_hf_uri(spec.strip())
    except HfUriError:
        raise LLMConfigError(
            f"{redact(spec)!r} is not a Hub file; expected hf://OWNER/NAME[@REVISION]/FILE.gguf"
        ) from None
    if uri.type != "model" or not uri.path_in_repo:
        raise LLMConfigError(
            f"{redact(spec)!r} names no file of a model repository; "
            "expected hf://OWNER/NAME[@REVISION]/FILE.gguf"
        )
    return hub_file(uri.id, uri.path_in_repo, uri.revision)


def cache_dir() -> Path:
    """The Hugging Face cache ragtune reads and fills (``HF_HUB_CACHE``, else ``HF_HOME``/hub)."""
    return Path(constants.HF_HUB_CACHE)


def cached_gguf(file: HubFile) -> Path | None:
    """The cached copy of ``file`` at its revision, found without any network access."""
    found = try_to_load_from_cache(file.repo, file.filename, revision=file.revision)
    # try_to_load_from_cache answers a path, None, or a marker that the file is known
    # not to exist at that commit.
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def gguf_for_llm(file: HubFile) -> Path:
    """The GGUF that ``--llm hf://...`` loads: the cached copy, with no request; a file
    not yet cached is pulled (with a progress bar), unless HF_HUB_OFFLINE is set."""
    cached = cached_gguf(file)
    if cached is not None:
        _require_gguf(cached, file)
        return cached
    return pull_gguf(file)


def pull_gguf(file: HubFile) -> Path:
    """Download ``file`` into the cache, checked, and return its cached path.

    One HEAD request resolves the revision to a commit and states the file's SHA-256
    and size; a file already cached at that commit is not downloaded again. Otherwise
    huggingface_hub downloads it into a staging cache (resuming a dropped transfer), and
    it enters the cache only once its checksum, size and GGUF header are right.
    Raises ModelNotFoundError with a one-line reason.
    """
    if constants.is_offline_mode():
        cached = cached_gguf(file)
        if cached is None:
            raise _not_cached_offline(file)
        return cached
    token = get_token()
    try:
        metadata = get_hf_file_metadata(
            hf_hub_url(file.repo, file.filename, revision=file.revision)
        )
        commit, checksum = _commit_and_checksum(file, metadata.commit_hash, metadata.etag)
        repo_dir = cache_dir() / repo_folder_name(repo_id=file.repo, repo_type="model")
        pointer = repo_dir / "snapshots" / commit / file.filename
        if not pointer.is_file():
            _download_checked(file, commit, checksum, metadata.size, repo_dir, pointer)
        _record_revision(repo_dir, file.revision, commit)
    except ModelNotFoundError:
        raise
    except Exception as error:
        message = _download_failure(file, error)
        if message is None:
            raise
        raise ModelNotFoundError(redact(message, token or "")) from None
    return pointer


def cached_ggufs() -> list[CachedGGUF]:
    """Every GGUF file in the Hugging Face cache, by repository, with its ``--llm`` spec."""
    try:
        info = scan_cache_dir()
    except CacheNotFound:
        return []
    found: list[CachedGGUF] = []
    for repo in sorted(info.repos, key=lambda repo: repo.repo_id):
        if repo.repo_type != "model":
            continue
        for revision in sorted(repo.revisions, key=lambda revision: revision.commit_hash):
            name = _revision_name(revision.refs, revision.commit_hash)
            for cached in sorted(revision.files, key=lambda cached: str(cached.file_path)):
                filename = cached.file_path.relative_to(revision.snapshot_path).as_posix()
                if not filename.lower().endswith(".gguf"):
                    continue
                spec = HubFile(repo=repo.repo_id, filename=filename, revision=name).uri
                found.append(CachedGGUF(spec, cached.file_path, cached.size_on_disk))
    return found


def human_size(size: int) -> str:
    """A byte count as people read it: ``491.4 MB``."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


class _PrintableProgress(hub_tqdm):
    """huggingface_hub's progress bar with a label the terminal shows rather than acts on:
    the label may come from the server (a Content-Disposition file name)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if isinstance(kwargs.get("desc"), str):
            kwargs["desc"] = printable(kwargs["desc"])
        super().__init__(*args, **kwargs)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description(printable(desc) if desc else desc, refresh)


@dataclass(frozen=True)
class _Checksum:
    """What the Hub states a file's content is: an LFS file's SHA-256 or, for a file
    kept in git itself, its git blob SHA-1. It also names the file under ``blobs/``."""

    algorithm: str  # "sha256" or "git-sha1"
    digest: str

    def of(self, path: Path, size: int) -> str:
        digest = hashlib.sha256() if self.algorithm == "sha256" else hashlib.sha1()
        if self.algorithm == "git-sha1":
            digest.update(f"blob {size}\0".encode())
        with (
            path.open("rb") as handle,
            # disable=None: shown on a terminal only, as huggingface_hub's download bar is.
            _PrintableProgress(
                total=size,
                unit="B",
                unit_scale=True,
                desc=f"Checking {self.algorithm}",
                disable=None,
            ) as bar,
        ):
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
                bar.update(len(chunk))
        return digest.hexdigest()


def _commit_and_checksum(
    file: HubFile, commit: str | None, etag: str | None
) -> tuple[str, _Checksum]:
    # Both become paths in the cache: anything but hex digits is refused.
    if commit is None or not _COMMIT.fullmatch(commit):
        raise ModelNotFoundError(
            f"{constants.ENDPOINT} did not answer like the Hugging Face Hub for {file.uri} "
            "(no commit id); check HF_ENDPOINT"
        )
    etag = (etag or "").lower()
    if _SHA256.fullmatch(etag):
        return commit, _Checksum("sha256", etag)
    if _COMMIT.fullmatch(etag):
        return commit, _Checksum("git-sha1", etag)
    raise ModelNotFoundError(
        f"{constants.ENDPOINT} states no checksum for {file.uri}; refusing a file that "
        "cannot be verified"
    )


def _download_checked(
    file: HubFile,
    commit: str,
    checksum: _Checksum,
    size: int | None,
    repo_dir: Path,
    pointer: Path,
) -> None:
    with _staging_cache(repo_dir) as staging:
        downloaded = hf_hub_download(
            file.repo,
            file.filename,
            revision=commit,
            cache_dir=staging,
            tqdm_class=_PrintableProgress,
        )
        staged = Path(downloaded).resolve()  # the blob itself, not the snapshot's link
        actual_size = staged.stat().st_size
        if size is not None and actual_size != size:
            raise ModelNotFoundError(
                f"download of {file.uri} refused: {actual_size} bytes, the Hub states {size}"
            )
        if checksum.of(staged, actual_size) != checksum.digest:
            raise ModelNotFoundError(
                f"download of {file.uri} refused: its {checksum.algorithm} checksum does "
                f"not match the one the Hub states ({checksum.digest[:12]}...); nothing was "
                "cached, pull it again"
            )
        _require_gguf(staged, file)
        _publish(staged, repo_dir / "blobs" / checksum.digest, pointer)


@contextmanager
def _staging_cache(repo_dir: Path) -> Iterator[Path]:
    """A private cache folder inside the repository's own (so the checked file moves into
    place by a rename, on one file system), gone afterwards; so is the repository's
    folder if the download left it empty, which a cache scan would report as damaged."""
    root = repo_dir / _STAGING
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for empty in (root, repo_dir):
            with suppress(OSError):
                empty.rmdir()


def _publish(staged: Path, blob: Path, pointer: Path) -> None:
    """``staged`` as the cache's blob, and the snapshot's entry for it, each in one step,
    laid out as huggingface_hub lays out its own downloads."""
    blob.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, blob)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    link = pointer.with_name(f".{pointer.name}.{secrets.token_hex(8)}.tmp")
    try:
        try:
            os.symlink(os.path.relpath(blob, pointer.parent), link)
        except OSError:  # no symbolic links here (Windows without developer mode)
            os.link(blob, link)
        os.replace(link, pointer)
    finally:
        link.unlink(missing_ok=True)


def _record_revision(repo_dir: Path, revision: str, commit: str) -> None:
    """Point ``refs/REVISION`` at ``commit``, so the cache answers for the branch or tag."""
    if revision == commit:
        return
    ref = repo_dir / "refs" / revision
    with suppress(OSError):
        if ref.read_text(encoding="utf-8").strip() == commit:
            return
    write_text_atomic(ref, commit)


def _require_gguf(path: Path, file: HubFile) -> None:
    with path.open("rb") as handle:
        if handle.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
            raise ModelNotFoundError(f"{file.uri} is not a GGUF model file; refused")


def _revision_name(refs: frozenset[str], commit: str) -> str:
    if DEFAULT_REVISION in refs:
        return DEFAULT_REVISION
    return min(refs) if refs else commit


def _not_cached_offline(file: HubFile) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"{file.uri} is not in the Hugging Face cache ({cache_dir()}) and HF_HUB_OFFLINE "
        f"is set; run `{file.pull_command}` where the Hub can be reached"
    )


def _download_failure(file: HubFile, error: Exception) -> str | None:
    """The one-line reason for a failed pull, decided on the error's type; None for an
    error that is a bug rather than a failed download."""
    endpoint = constants.ENDPOINT
    if isinstance(error, OfflineModeIsEnabled):
        return str(_not_cached_offline(file))
    if isinstance(error, GatedRepoError):
        return (
            f"{file.repo} is gated: accept its terms on {endpoint}/{file.repo}, then set "
            "HF_TOKEN to a token of that account"
        )
    if isinstance(error, RepositoryNotFoundError):
        status = error.response.status_code
        return (
            f"no model repository {file.repo} at {endpoint} (HTTP {status}), or it is "
            "private: check the name, or set HF_TOKEN to a token that can read it"
        )
    if isinstance(error, RevisionNotFoundError):
        return f"{file.repo} has no revision {file.revision!r}"
    if isinstance(error, RemoteEntryNotFoundError):
        return f"{file.repo} has no file {file.filename!r} at revision {file.revision}"
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code
        if status in (401, 403):
            return f"{endpoint} refused access to {file.uri} (HTTP {status}): check HF_TOKEN"
        return f"{endpoint} answered HTTP {status} for {file.uri}"
    if isinstance(error, FileMetadataError):
        return (
            f"{endpoint} did not answer like the Hugging Face Hub for {file.uri}: check HF_ENDPOINT"
        )
    if isinstance(error, httpx2.HTTPError | LocalEntryNotFoundError):
        return f"cannot download {file.uri} from {endpoint}: {one_line(error)}"
    if isinstance(error, OSError):
        return f"cannot download {file.uri} into {cache_dir()}: {write_failure(error, cache_dir())}"
    return None
