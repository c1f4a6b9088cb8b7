"""What a question must be before anything searches for it or answers it.

Each text is checked once, where it enters: the retriever
(``ragtune.index.ranking``) checks what it searches for, and the query engine
checks the question it asks the model only when retrieval searched for another
text (a chat's rewrite). It lives apart from both because the index layer may
not import the query layer.
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
