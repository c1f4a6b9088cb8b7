"""Bytes of a text-like document to str, trusting the declared charset only if it fits."""

from __future__ import annotations

import json

from charset_normalizer import from_bytes

from ragtune.errors import ExtractionError


def decode_text(data: bytes, declared: str | None, source: str) -> str:
    if b"\x00" in data[:8192]:
        raise ExtractionError(f"{source}: binary data where text was expected")
    for encoding in (declared, "utf-8"):
        if encoding:
            try:
                return data.decode(encoding)
            except (UnicodeDecodeError, LookupError):
                continue
    # The declared charset lied (Latin-1 served as UTF-8 is common): detect it.
    best = from_bytes(data).best()
    if best is None:
        raise ExtractionError(f"{source}: cannot tell the text's character set")
    return str(best)


def check_json(text: str, source: str) -> str:
    """JSON is indexed as it is, once it is known to be JSON."""
    try:
        json.loads(text)
    except ValueError as error:
        raise ExtractionError(f"{source}: invalid JSON ({error})") from None
    return text.strip()
