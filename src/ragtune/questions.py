"""What a question must be before anything searches for it or answers it.

Shared by retrieval (``index``) and answering (``query``), which must not import
each other both ways.
"""

from __future__ import annotations

from ragtune.errors import InvalidQueryError

MAX_QUERY_CHARS = 4000


def validate_query(query: str) -> str:
    """The question, stripped; InvalidQueryError when it is empty or too long."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidQueryError("the question is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidQueryError(
            f"the question is {len(query)} characters; the limit is {MAX_QUERY_CHARS}"
        )
    return query.strip()
