"""A wall-clock deadline for a whole HTTP response, headers and body together.

httpx's timeouts bound each socket operation, so a server that sends one header
line a second, or one keep-alive byte a second, never trips them. A client made
by :func:`deadline_client` bounds every connect, TLS handshake, read and write
of a request by what is left of its :class:`Deadline` too. The deadline is per
thread, because the crawler's workers share one client and its connection pool::

    deadline = Deadline()
    client = deadline_client(deadline, timeout=httpx.Timeout(10.0))
    with deadline.within(30.0):
        client.get(url)  # raises an httpx.TimeoutException 30 s after it began, at most

Proxies from the environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``,
``NO_PROXY``) are honoured as httpx honours them: a client given a transport
of its own would otherwise ignore them. A client given a guarding
:class:`~ragtune.net.address_guard.AddressPolicy` connects directly and ignores
them: through a proxy the address finally connected to is the proxy's choice,
which no check here could see.
"""

from __future__ import annotations

import ssl
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from ragtune.net.address_guard import AddressPolicy, guarded_backend

# Socket timeouts are rounded to the poll clock: one firing this close to the
# deadline fired because of it.
_SLACK = 0.05


class Deadline(threading.local):
    """When the current thread's request must be over (time.monotonic()), if ever."""

    at: float | None = None

    @contextmanager
    def within(self, seconds: float) -> Iterator[None]:
        """Bound what runs inside to ``seconds`` (or to an enclosing, earlier deadline)."""
        outer = self.at
        ends = time.monotonic() + seconds
        self.at = ends if outer is None else min(outer, ends)
        try:
            yield
        finally:
            self.at = outer

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at - _SLACK

    def bound(self, timeout: float | None, expired: type[Exception]) -> float | None:
        """``timeout``, or what is left of the deadline when that is less; raises
        ``expired`` once it has passed."""
        if self.at is None:
            return timeout
        left = self.at - time.monotonic()
        if left <= 0:
            raise expired("the response's deadline passed")
        return left if timeout is None else min(timeout, left)


def deadline_client(
    deadline: Deadline, address_policy: AddressPolicy | None = None, **options: Any
) -> httpx.Client:
    """An ``httpx.Client(**options)`` whose requests obey ``deadline`` and connect only
    to addresses ``address_policy`` allows (an AddressRefused names the host when
    not; a guarding policy also means no proxy)."""
    limits = options.pop("limits", httpx.Limits())
    policy = address_policy or AddressPolicy()
    return httpx.Client(transport=_DeadlineTransport(deadline, limits, policy), **options)


class _DeadlineTransport(httpx.BaseTransport):
    """Routes each request directly or through the environment's proxy for it, over
    httpx transports whose every socket operation is bounded by the deadline."""

    def __init__(self, deadline: Deadline, limits: httpx.Limits, policy: AddressPolicy) -> None:
        self._deadline = deadline
        self._limits = limits
        self._policy = policy
        self._transports: dict[str | None, httpx.HTTPTransport] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        proxy = None if self._policy.guards else _proxy_for(request.url)
        return self._transport(proxy).handle_request(request)

    def close(self) -> None:
        with self._lock:
            for transport in self._transports.values():
                transport.close()
            self._transports.clear()

    def _transport(self, proxy: str | None) -> httpx.HTTPTransport:
        with self._lock:
            transport = self._transports.get(proxy)
            if transport is None:
                transport = httpx.HTTPTransport(limits=self._limits, proxy=proxy)
                # httpx passes no network backend to its connection pool; the pool
                # reads this attribute whenever it opens a connection.
                pool = transport._pool
                # The guard is innermost: the address it approves is the one connected to.
                backend = guarded_backend(pool._network_backend, self._policy)
                pool._network_backend = _Backend(backend, self._deadline)
                self._transports[proxy] = transport
            return transport


def host_name_encodes(host: str) -> bool:
    """Whether the resolver can be asked for ``host`` (an ASCII name or an IP literal):
    socket encodes it with the idna codec, which refuses an empty label (``a..b``) or
    one over 63 characters with a UnicodeError, not an OSError."""
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return True


def _proxy_for(url: httpx.URL) -> str | None:
    proxies = urllib.request.getproxies()  # read each time: as httpx, from the environment
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(url.host):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if not host_name_encodes(host):
            # Every client reports a ConnectError; the resolver's UnicodeError would escape.
            raise httpcore.ConnectError(f"invalid host name {host!r}")
        timeout = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream, self._deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_unix_socket(path, timeout, socket_options)
        return _Stream(stream, self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.bound(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.bound(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        timeout = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)
