"""Bytes of a text-like document to str, trusting the declared charset only if it fits.

Like every extractor here, these raise ExtractionError with the bare reason; the
caller that knows the document's name (a path, a URL) adds it once.
"""

from __future__ import annotations

import json

from charset_normalizer import from_bytes

from ragtune.errors import ExtractionError, one_line


def decode_text(data: bytes, declared: str | None) -> str:
    if b"\x00" in data[:8192]:
        raise ExtractionError("binary data where text was expected")
    for encoding in (declared, "utf-8"):
        if encoding:
            try:
                return data.decode(encoding)
            except (UnicodeDecodeError, LookupError):
                continue
    # The declared charset lied (Latin-1 served as UTF-8 is common): detect it.
    try:
        best = from_bytes(data).best()
    except Exception as error:  # a third-party detector: any failure is this document's
        raise ExtractionError(f"cannot tell the text's character set ({one_line(error)})") from None
    if best is None:
        raise ExtractionError("cannot tell the text's character set")
    return str(best)


def check_json(text: str) -> str:
    """JSON is indexed as it is, once it is known to be JSON."""
    try:
        json.loads(text)
    except RecursionError:
        raise ExtractionError("JSON nested too deeply to read") from None
    except ValueError as error:
        raise ExtractionError(f"invalid JSON ({error})") from None
    return text.strip()
