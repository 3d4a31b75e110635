"""Where the hub may connect when it delivers: the address policy for endpoint URLs.

A receiver's URL is checked twice: when an organisation's admin registers the endpoint (the URL's host,
and the addresses its name resolves to then), and on every new connection the delivery worker opens —
the name resolved again, every address checked, and the connection made to a checked address, never to
whatever a second lookup returns (a name that later points somewhere else, DNS rebinding, is caught).
The worker's HTTP client carries this in its transport (:func:`pinned_transport`), so every adapter that
uses ``AdapterContext.http`` is covered.

Refused always, dev mode too: the unspecified addresses (``0.0.0.0``, ``::``), multicast, broadcast and
the cloud providers' metadata services (``169.254.169.254``, ``fd00:ec2::254``, …). Refused outside dev
mode, unless inside one of ``HUB_ENDPOINT_ALLOWED_NETWORKS`` (on-premise receivers): every address that is
not globally routable — loopback, private (RFC 1918, ``fc00::/7``), link-local (``169.254/16``,
``fe80::/10``), shared (``100.64/10``), reserved and documentation ranges. An IPv4 address inside IPv6
(``::ffff:a.b.c.d``, ``64:ff9b::/96``, ``2002::/16``) is judged as that IPv4 address.

A refused delivery raises :class:`RefusedAddress`, an ``AdapterConfigError``: the entry is
dead-lettered at once, since retrying cannot help until the endpoint or the allowlist changes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from hub.adapters.base import AdapterConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

__all__ = [
    "AddressPolicy",
    "RefusedAddress",
    "classify",
    "is_loopback_host",
    "pinned_transport",
    "system_resolve",
    "url_refusal",
]

# Instance metadata services hand out cloud credentials: AWS/GCP/Azure/OpenStack, AWS ECS task
# metadata, AWS over IPv6, Alibaba, and Azure's WireServer (a public address, hence listed).
CLOUD_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "168.63.129.16")
)
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data"})
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_BROADCAST = ipaddress.ip_address("255.255.255.255")
# No allowlist and no dev mode opens these: nothing legitimate listens there.
ALWAYS_REFUSED = frozenset({"cloud-metadata", "unspecified", "multicast", "broadcast"})


class RefusedAddress(AdapterConfigError):
    """The receiver's address is one the hub may not connect to (see ``hub.adapters.addresses``): a
    configuration error, dead-lettered at once. Fix the endpoint, or list its network in
    ``HUB_ENDPOINT_ALLOWED_NETWORKS``."""


def _unwrapped(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4), else ``ip`` itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def classify(address: str | IPAddress) -> str | None:
    """What kind of non-public address this is (``loopback``, ``private``, ``cloud-metadata``…), or None
    for a globally routable unicast address."""
    ip = _unwrapped(ipaddress.ip_address(address) if isinstance(address, str) else address)
    if ip in CLOUD_METADATA:
        return "cloud-metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip == _BROADCAST:
        return "broadcast"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if any(ip in net for net in _PRIVATE):
        return "private"
    if not ip.is_global or ip.is_reserved:
        return "reserved"
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """``dev_mode``: loopback and private networks allowed (the demo's and tests' receivers on
    loopback). ``allowed_networks``: networks whose addresses are allowed although not public."""

    dev_mode: bool = False
    allowed_networks: tuple[Network, ...] = ()

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why the hub may not connect to ``address`` (its kind), or None when it may."""
        ip = _unwrapped(ipaddress.ip_address(address) if isinstance(address, str) else address)
        kind = classify(ip)
        if kind is None:
            return None
        if kind in ALWAYS_REFUSED:
            return kind
        if self.dev_mode or any(ip.version == net.version and ip in net for net in self.allowed_networks):
            return None
        return kind


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def _meant_without_lookup(host: str) -> str | None:
    """The address a host means without a lookup: a literal one, or loopback for a localhost name."""
    name = host.rstrip(".").lower()
    if name in ("localhost", "localhost.localdomain") or name.endswith(".localhost"):
        return "127.0.0.1"
    return _literal(name)


def is_loopback_host(host: str) -> bool:
    """A loopback address or a localhost name: where plain http is tolerated (development)."""
    meant = _meant_without_lookup(host)
    return meant is not None and ipaddress.ip_address(meant).is_loopback


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _refused(host: str, addresses: Iterable[str], policy: AddressPolicy) -> str | None:
    for address in addresses:
        kind = policy.refusal(address)
        if kind is not None:
            # Never the address a name resolved to: registry errors go to organisations' admins, and
            # dead-letter details to the sender; neither should learn the hub's internal DNS.
            verb = "is" if _literal(host) is not None else "resolves to"
            return f"{host} {verb} a {kind} address"
    return None


async def url_refusal(
    url: str, policy: AddressPolicy, *, resolve: Resolver = system_resolve, timeout_seconds: float = 2.0
) -> str | None:
    """Why the hub may not deliver to ``url`` (for the registry's 422), or None. A name that does not
    resolve now is let through: the worker checks every connection anyway."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return None  # not a URL the hub could deliver to; the adapter's own validation says what is wrong
    host = parsed.host
    if not host:
        return None
    if host.rstrip(".").lower() in _METADATA_NAMES:
        return f"{host} is a cloud-metadata address"
    meant = _meant_without_lookup(host)
    if meant is not None:
        return _refused(host, [meant], policy)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        addresses = await asyncio.wait_for(resolve(host, port), timeout_seconds)
    except (OSError, TimeoutError, UnicodeError):
        return None
    return _refused(host, addresses, policy)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, checks every address, and connects to a checked one. TLS still verifies
    the certificate against the host name: httpcore passes the URL's host as ``server_hostname``."""

    def __init__(self, policy: AddressPolicy, resolve: Resolver) -> None:
        self._policy = policy
        self._resolve = resolve
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await asyncio.wait_for(self._resolve(host, port), timeout)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took longer than {timeout} s") from None
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        refused = _refused(host, addresses, self._policy)
        if refused is not None:
            raise RefusedAddress(
                f"{refused}: the hub does not deliver there (on-premise networks: HUB_ENDPOINT_ALLOWED_NETWORKS)"
            )
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RefusedAddress("deliveries never go to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def pinned_transport(
    policy: AddressPolicy, *, limits: httpx.Limits, resolve: Resolver = system_resolve
) -> httpx.AsyncHTTPTransport:
    """An httpx transport that connects only where ``policy`` allows (see the module)."""
    transport = httpx.AsyncHTTPTransport(limits=limits)
    # httpx's transport takes no network backend, its connection pool does: the pool is replaced by one
    # with the same settings and the pinning backend.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_PinnedBackend(policy, resolve),
    )
    return transport
