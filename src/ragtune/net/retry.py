"""When a failed request is worth another try, and how long to wait before it.

Shared by the crawler (web/fetch.py) and the OpenAI-compatible client
(net/openai_client.py): one set of statuses, one Retry-After parser, one backoff.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
from datetime import UTC, datetime

# The statuses that say "not now" rather than "no": 408 Request Timeout, 429 Too Many
# Requests, 500 Internal Server Error, 502 Bad Gateway, 503 Service Unavailable and 504
# Gateway Timeout. Not the other 5xx (501 Not Implemented, 505 HTTP Version Not
# Supported, ...): they describe the server or the request and would answer the same
# again. Nor 425 Too Early: it refuses TLS early data, which the HTTP client never sends.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# No caller waits this long; the ceiling keeps absurd values finite and printable.
RETRY_AFTER_CEILING_S = 24 * 3600.0
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for, in seconds, or None when it says nothing
    usable.

    RFC 9110 allows delta-seconds (``120``) or an HTTP-date (``Wed, 21 Oct 2015 07:28:00
    GMT``); a date in the past means now (0). A fraction (``1.5``), which some servers
    send, is read too. The result is at most ``RETRY_AFTER_CEILING_S``: whether that is
    too long to wait is the caller's policy. ``now`` is for tests.
    """
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        seconds: float | None = float(value)
    else:
        seconds = _seconds_until(value, now or datetime.now(UTC))
    return None if seconds is None else min(max(seconds, 0.0), RETRY_AFTER_CEILING_S)


def backoff_seconds(attempt: int, base: float) -> float:
    """The wait before retry number ``attempt`` (1, 2, ...) when the server named none:
    ``base`` doubled each time, plus up to as much again at random, so clients that
    failed together do not all come back at once."""
    delay = base * 2 ** (attempt - 1)
    return delay + random.uniform(0, delay)


def _seconds_until(http_date: str, now: datetime) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone: RFC 9110 dates are always GMT
        when = when.replace(tzinfo=UTC)
    seconds = (when - now).total_seconds()
    return seconds if math.isfinite(seconds) else None
