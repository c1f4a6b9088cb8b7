"""API keys and per-key rate limits.

**Keys.** ``--api-key-file F`` holds one key a line as ``sha256:<hex digest> [name]``
(``#`` starts a comment); ``ragtune serve-key new --file F`` makes a key, prints it
once and appends only its hash. The server never holds a key in clear. A plain
SHA-256 is enough here: the keys are 32 random bytes (256 bits), so there is no
dictionary to try and no brute force that a slow hash (scrypt, PBKDF2) would slow
further; those exist for passwords people choose. A presented key is hashed and
compared with every stored hash with ``hmac.compare_digest``, all of them, so
the time taken says nothing about which hash came close.

**Rate limits.** A token bucket per key (or, without keys, per client address):
``rate_limit_per_minute`` requests a minute with bursts of as many; an empty
bucket answers 429 with ``Retry-After``, the seconds until it holds a token again.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ragtune.errors import RagtuneError

HASH_SCHEME = "sha256"
KEY_PREFIX = "rtk-"
_LINE = re.compile(r"sha256:([0-9a-f]{64})(?:\s+([A-Za-z0-9._@-]{1,64}))?")
# Keys as a client sends them: the prefix and URL-safe base64.
_KEY_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,256}")
# Buckets of clients not seen for this long are forgotten (a full bucket is no state).
_IDLE_SECONDS = 600.0


@dataclass(frozen=True)
class StoredKey:
    digest: bytes
    name: str


def hash_key(key: str) -> str:
    return f"{HASH_SCHEME}:{hashlib.sha256(key.encode('utf-8')).hexdigest()}"


class KeyRing:
    """The hashes of the keys that may call the API."""

    def __init__(self, keys: list[StoredKey]) -> None:
        if not keys:
            raise RagtuneError("the API key file holds no key; make one with ragtune serve-key new")
        self._keys = keys

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RagtuneError(f"API key file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as error:
            raise RagtuneError(f"cannot read API key file {path}: {error}") from None
        keys: list[StoredKey] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            match = _LINE.fullmatch(line)
            if match is None:
                raise RagtuneError(
                    f"{path} line {number}: expected 'sha256:<64 hex digits> [name]' "
                    "(the file holds key hashes, never keys)"
                )
            name = match.group(2) or f"key{len(keys) + 1}"
            keys.append(StoredKey(bytes.fromhex(match.group(1)), name))
        return cls(keys)

    def identify(self, presented: str | None) -> str | None:
        """The name of the key ``presented`` is, or None when it is none of them."""
        if not presented or not _KEY_SHAPE.fullmatch(presented):
            return None
        digest = hashlib.sha256(presented.encode("utf-8")).digest()
        found: str | None = None
        for key in self._keys:  # every one, whatever matched: constant in the key's value
            if hmac.compare_digest(digest, key.digest):
                found = key.name
        return found


def new_key(path: Path, name: str | None = None) -> str:
    """A fresh key; its hash is appended to ``path`` (created 0600), the key returned."""
    if name is not None and not re.fullmatch(r"[A-Za-z0-9._@-]{1,64}", name):
        raise RagtuneError("a key name is 1-64 letters, digits, '.', '_', '@' or '-'")
    if path.exists() and path.stat().st_size:
        KeyRing.load(path)  # never append to a file that is not a key file
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    line = hash_key(key) + (f" {name}" if name else "") + "\n"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
            handle.write(line)
    except OSError as error:
        raise RagtuneError(f"cannot write API key file {path}: {error.strerror}") from None
    return key


class RateLimiter:
    """Token buckets: ``per_minute`` requests a minute for each caller, bursts of as many."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(max(1, per_minute))
        self.refill_per_second = self.capacity / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, caller: str) -> float:
        """Spend one token of ``caller``'s; 0.0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, when = self._buckets.get(caller, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - when) * self.refill_per_second)
            if tokens >= 1.0:
                self._buckets[caller] = (tokens - 1.0, now)
                self._forget_idle(now)
                return 0.0
            self._buckets[caller] = (tokens, now)
            return (1.0 - tokens) / self.refill_per_second

    def _forget_idle(self, now: float) -> None:
        if len(self._buckets) < 1024:
            return
        for caller, (_, when) in list(self._buckets.items()):
            if now - when > _IDLE_SECONDS:
                del self._buckets[caller]


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least one."""
    return str(max(1, math.ceil(seconds)))
