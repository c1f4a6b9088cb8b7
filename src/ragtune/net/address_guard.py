"""Which network addresses a fetch may connect to: the SSRF guard of ``ragtune serve``.

A server that reads URLs on a client's behalf must not become a way into its own
network: its loopback services, the private networks it sits on, a cloud's
metadata service at 169.254.169.254. Under a guarding :class:`AddressPolicy` only
globally routable unicast addresses are connected to; everything else (loopback,
private, shared/CGNAT, link-local, multicast, unspecified, broadcast, reserved,
documentation and benchmarking ranges, IPv6 site-local) is refused, and an IPv6
address that carries an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, 6to4
``2002::/16``, NAT64 ``64:ff9b::/96``) is judged by the IPv4 address it carries.

The check is made where the connection is opened (:func:`guarded_backend`): the
host httpx's own parser took from the URL is resolved there, every address it
resolves to is checked, and the socket is opened to an approved address, so a
name that resolves differently a moment later (DNS rebinding), a second parser
reading the URL another way, a redirect, or an IP spelt in decimal, octal or hex
(``2130706433``, ``127.1``, which the resolver reads as 127.0.0.1) gains nothing.
:func:`check_public_url` is the same check made up front, so a request can be
answered with a clear refusal before any work starts.

A policy that allows private addresses (the command line's behaviour) refuses
nothing. ``allow_networks`` names networks let through anyway (an operator's
intranet), as CIDR blocks without ports.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import Any, Protocol

import httpcore
import httpx

from ragtune.errors import AddressRefused, RagtuneError
from ragtune.url_options import redact

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

_SHARED = IPv4Network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_BROADCAST = IPv4Address("255.255.255.255")
_NAT64 = IPv6Network("64:ff9b::/96")  # the well-known NAT64 prefix (RFC 6052)
_METADATA = frozenset({IPv4Address("169.254.169.254"), IPv6Address("fd00:ec2::254")})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SHOWN_CHARS = 80


class GuardSettings(Protocol):
    """What a policy is made from: IngestSettings has both fields."""

    allow_private_urls: bool
    url_allow_networks: list[str]


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses may be connected to: all of them when ``allow_private``,
    otherwise public ones and those in ``allow_networks``."""

    allow_private: bool = True
    allow_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, allow_private: bool, allow_networks: Iterable[str] = ()) -> AddressPolicy:
        """A policy from plain values; a RagtuneError names a network that is not a
        CIDR block (``10.0.0.0/8``, ``fd00::/8``) or a single address."""
        if isinstance(allow_networks, str):  # one network, not its characters
            allow_networks = [allow_networks]
        return cls(allow_private, tuple(_network(value) for value in allow_networks))

    @classmethod
    def from_settings(cls, settings: GuardSettings) -> AddressPolicy:
        """The policy IngestSettings' ``allow_private_urls`` and ``url_allow_networks`` say."""
        return cls.of(settings.allow_private_urls, settings.url_allow_networks)

    @property
    def guards(self) -> bool:
        """Whether this policy refuses anything at all."""
        return not self.allow_private

    def refusal(self, ip: str | IPAddress) -> str | None:
        """Why ``ip`` may not be connected to (``127.0.0.1 is a loopback address``),
        or None when it may."""
        address = ip_address(ip) if isinstance(ip, str) else ip
        why = self._why(address)
        return f"{address} is {why}" if why else None

    def host_refusal(self, host: str, port: int) -> str | None:
        """Why a connection to ``host`` may not be made, or None. Every address it
        resolves to is checked: a name with one private address among public ones is
        refused whole, so the order the resolver answers in never matters. OSError
        (or UnicodeError) when it cannot be resolved."""
        return self.refusal_among(host, resolve(host, port))

    def refusal_among(self, host: str, addresses: list[IPAddress]) -> str | None:
        """Why ``host``, resolved to ``addresses``, may not be connected to, or None."""
        for address in addresses:
            why = self._why(address)
            if why:
                if _is_literal(host, address):
                    return f"{address} is {why}"
                return f"{host} resolves to {address}, {why}"
        return None

    def _why(self, address: IPAddress) -> str | None:
        if self.allow_private:
            return None
        embedded = _embedded_ipv4(address)
        if self._allowed_network(address) or (embedded and self._allowed_network(embedded)):
            return None
        if embedded is not None:
            kind = _special_kind(embedded)
            return f"an IPv6 address carrying {embedded}, {kind}" if kind else None
        return _special_kind(address)

    def _allowed_network(self, address: IPAddress) -> bool:
        return any(address in network for network in self.allow_networks)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order, each once; the
    resolver's OSError (or UnicodeError, for a name IDNA cannot encode) when none."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: dict[IPAddress, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        # An IPv6 scope (fe80::1%eth0) is not part of the address judged.
        addresses[ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
    return list(addresses)


def check_public_url(url: str, policy: AddressPolicy) -> None:
    """Refuse ``url`` up front, with the reason a fetch under ``policy`` would fail:
    an AddressRefused naming its host when it is no valid http(s) URL, its host
    cannot be resolved, or any address the host resolves to is refused. The URL is
    read with httpx's parser, the one that fetches it."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as error:
        shown = redact(url)
        # The parser's message may quote a piece of a password; then say less.
        detail = f" ({_one_line(error)})" if shown == url else ""
        raise AddressRefused(_shown(shown), f"not a valid URL{detail}") from None
    if parsed.scheme not in _DEFAULT_PORTS:
        raise AddressRefused(_shown(redact(url)), "not an http(s) URL")
    authority = url.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in authority or "\\" in authority:
        # Parsers disagree on where such a host starts (WHATWG reads a backslash as a
        # slash, so http://127.0.0.1\@example.com is 127.0.0.1 to a browser).
        raise AddressRefused(
            _shown(redact(url)), "the URL's host part holds a user name, '@' or '\\'"
        )
    host = parsed.host
    if not host:
        raise AddressRefused(_shown(redact(url)), "the URL has no host")
    if not policy.guards:
        return
    port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
    try:
        refusal = policy.host_refusal(host, port)
    except (OSError, UnicodeError) as error:
        raise AddressRefused(
            _shown(host), f"cannot resolve the host ({_one_line(error)})"
        ) from None
    if refusal:
        raise AddressRefused(_shown(host), f"address refused: {refusal}")


def guarded_backend(
    inner: httpcore.NetworkBackend, policy: AddressPolicy
) -> httpcore.NetworkBackend:
    """``inner``, with every TCP connection first put to ``policy``."""
    return _GuardedBackend(inner, policy) if policy.guards else inner


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves the host itself, refuses it (AddressRefused, naming the host) when
    any address is refused, and connects to the approved addresses in turn, so the
    address checked is the address connected to."""

    def __init__(self, inner: httpcore.NetworkBackend, policy: AddressPolicy) -> None:
        self._inner = inner
        self._policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError) as error:
            raise httpcore.ConnectError(_one_line(error)) from None
        refusal = self._policy.refusal_among(host, addresses)
        if refusal:
            raise AddressRefused(_shown(host), f"address refused: {refusal}")
        failure: Exception = httpcore.ConnectError(f"{host} resolves to no address")
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as error:
                failure = error
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        # A local socket is a service on this machine: never a public address.
        raise AddressRefused(_shown(path), "address refused: a Unix socket is local")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _is_literal(host: str, address: IPAddress) -> bool:
    """Whether ``host`` is ``address`` written out (so "resolves to" would be noise)."""
    try:
        return ip_address(host) == address
    except ValueError:
        return False


def _network(value: str) -> IPNetwork:
    try:
        return ip_network(str(value).strip())
    except ValueError as error:
        raise RagtuneError(
            f"allowed network {_shown(str(value))}: {error} "
            "(give a CIDR block such as 10.0.0.0/8 or fd00::/8, or one address)"
        ) from None


def _embedded_ipv4(address: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (IPv4-mapped, 6to4, NAT64), if any."""
    if not isinstance(address, IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _special_kind(address: IPAddress) -> str | None:
    """What makes ``address`` no public unicast address ("a loopback address"), or
    None for one that is. Explicit tests come first for a precise reason; is_global
    catches the rest (documentation, benchmarking, protocol-assignment ranges)."""
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        metadata = " (a cloud metadata service)" if address in _METADATA else ""
        return f"a link-local address{metadata}"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, IPv6Address) and address.is_site_local:
        return "a site-local address"
    if address in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if address == _BROADCAST:
        return "the broadcast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a public address"
    return None


def _shown(text: str) -> str:
    """Untrusted text fit for a one-line message: printable ASCII, cut short."""
    text = str(text)
    if not text:
        return "''"
    shown = ascii(text[:_SHOWN_CHARS])[1:-1]
    return shown + ("…" if len(text) > _SHOWN_CHARS else "")


def _one_line(error: BaseException) -> str:
    return _shown(" ".join(str(error).split()) or type(error).__name__)
