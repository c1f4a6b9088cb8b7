"""What a transport failure was, under httpx's wrapping.

httpx raises its own exception types and keeps the socket's error as the cause
(``httpx.ConnectError`` from ``httpcore.ConnectError`` from ``ConnectionRefusedError``);
the innermost one says what happened, by its type and its message.
"""

from __future__ import annotations


def innermost(error: BaseException) -> BaseException:
    """The exception at the bottom of ``error``'s chain of causes."""
    cause = error
    seen = {id(cause)}
    while True:
        inner = cause.__cause__ or cause.__context__
        if inner is None or id(inner) in seen:
            return cause
        seen.add(id(inner))
        cause = inner


def root_message(error: BaseException) -> str:
    """The first line of the innermost message ("Name or service not known",
    "[Errno 111] Connection refused"), or its type's name when it has none."""
    cause = innermost(error)
    return (str(cause) or type(cause).__name__).splitlines()[0]


def refused(error: BaseException) -> bool:
    """Whether nothing listened at the address: the connection was refused."""
    return isinstance(innermost(error), ConnectionRefusedError)


def refused_or_reset(error: BaseException) -> bool:
    """Whether the connection was refused or reset: a server restarting, worth a retry."""
    return isinstance(innermost(error), ConnectionRefusedError | ConnectionResetError)
