"""The SSRF guard: URLs that outside parties give the node (webhooks, remote sources).

It lives at the bottom of the layers (like ``config`` and ``proc``) because both the job sources
(webhooks, gateway and embed claims, the Direct API) and the fetch stage (every hop of a
source download, ``pipeline.fetch``) use it.

A job source hands the node URLs written by someone else: the Direct API's ``webhook_url``, an
embed job's webhook, an ``http(s)`` source. Left unchecked, ``http://169.254.169.254/…`` or
``http://127.0.0.1:5001/api/v0/…`` would make the node attack its own host. The guard:

* accepts only ``http`` and ``https`` URLs with a host and **no user-info** (``user:pw@host``);
* resolves the host (every A/AAAA record, ``loop.getaddrinfo``) and refuses the URL if **any**
  address is loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7), link-local
  (169.254/16 — the cloud metadata address 169.254.169.254 — and fe80::/10), unspecified,
  multicast, reserved, shared/CGNAT (100.64/10), documentation/benchmark ranges, or an IPv6
  address that embeds one of those (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``,
  6to4 ``2002::/16``, Teredo);
* with ``ALLOW_PRIVATE_URLS=true`` (labs, tests) every http(s) address is allowed **except the
  node's own IPFS RPC** (``IPFS_API_ADDR``): a URL on the RPC's port that resolves to a
  loopback or unspecified address, an address of one of this machine's interfaces, or an
  address of the RPC host is refused whatever the setting.

Literal spellings do not matter (``http://2130706433/``, ``http://0x7f.1/``): only the resolved
addresses are checked.

DNS rebinding: a name may resolve to a public address at the check and to a private one a
moment later. :meth:`UrlGuard.pin` therefore returns the checked address, and the webhook
sender connects to exactly that address (Host header and TLS SNI/certificate name stay the
original host), so what was checked is what is reached. A plain :func:`check_public_url`
(e.g. at submission time) only checks: it is repeated, with pinning, before every delivery.
Redirects are never followed by the webhook sender (a 3xx could point anywhere); the fetch
stage follows them itself, checking and pinning every hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit, urlunsplit

import psutil

from speak_encoder.errors import (
    NetworkError,
    UnsafeUrl,
)

if TYPE_CHECKING:
    from speak_encoder.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Resolves ``(host, port)`` to IP address strings (injectable for tests).
Resolver = Callable[[str, int], Awaitable[list[str]]]

#: Longest URL accepted from outside.
MAX_URL_LENGTH = 2048

_SHARED_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_ALLOW_HINT = " (ALLOW_PRIVATE_URLS=true allows private addresses in a lab)"


@dataclass(frozen=True, slots=True)
class PinnedUrl:
    """A checked URL and the address to connect to (see :meth:`UrlGuard.pin`)."""

    url: str  # the original URL
    host: str  # its host name as written (no brackets)
    address: str  # the checked IP address to connect to
    connect_url: str  # ``url`` with the host replaced by ``address``
    host_header: str  # the Host header the server expects (host[:port])


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be reached from a URL given from outside (``None``: public)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip.teredo is not None:
            embedded = ip.teredo[1]
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = address_problem(embedded)
            return None if inner is None else f"{inner} (embedded in {ip})"
    checks: tuple[tuple[bool, str], ...] = (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address (cloud metadata lives there)"),
        (ip.is_multicast, "a multicast address"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_CGNAT, "a shared (CGNAT) address"),
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "a site-local address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "a non-public address"),
    )
    for hit, reason in checks:
        if hit:
            return reason
    return None


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address of ``host`` (A and AAAA) through the event loop's resolver."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise NetworkError(f"cannot resolve {host!r}: {exc}") from None
    seen: dict[str, None] = {}
    for info in infos:
        seen[str(info[4][0]).split("%", 1)[0]] = None  # drop an IPv6 zone id
    return list(seen)


def _parse(url: str, what: str) -> tuple[SplitResult, str, int]:
    if not isinstance(url, str) or not url:
        raise UnsafeUrl(f"{what}: an http(s) URL is required")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"{what}: the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise UnsafeUrl(f"{what}: the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"{what}: the URL is malformed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"{scheme!r}" if scheme else "no scheme"
        raise UnsafeUrl(f"{what}: only http and https URLs are allowed (got {shown})")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise UnsafeUrl(f"{what}: user names or passwords in the URL are not allowed")
    host = parts.hostname
    if not host:
        raise UnsafeUrl(f"{what}: the URL has no host name")
    return parts, host, port if port is not None else (443 if scheme == "https" else 80)


def _host_port_of_rpc(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of the IPFS RPC given as a multiaddr or a URL (``None``: none/unusable)."""
    address = address.strip()
    if not address:
        return None
    if address.startswith("/"):
        parts = address.strip("/").split("/")
        if len(parts) < 4 or parts[2] != "tcp" or not parts[3].isdigit():
            return None
        return parts[1], int(parts[3])
    try:
        split = urlsplit(address)
        port = split.port
    except ValueError:
        return None
    if not split.hostname:
        return None
    return split.hostname, port if port is not None else (443 if split.scheme == "https" else 80)


def _local_addresses() -> set[IPAddress]:
    found: set[IPAddress] = set()
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    found.add(ipaddress.ip_address(addr.address.split("%", 1)[0]))
                except ValueError:
                    continue
    return found


class UrlGuard:
    """The policy of one node: ``allow_private`` and its own IPFS RPC endpoint."""

    def __init__(
        self,
        *,
        allow_private: bool,
        ipfs_rpc: str = "",
        resolve: Resolver | None = None,
    ) -> None:
        self.allow_private = allow_private
        self._rpc = _host_port_of_rpc(ipfs_rpc)
        self._resolve: Resolver = resolve or system_resolve

    @classmethod
    def from_settings(cls, settings: Settings, *, resolve: Resolver | None = None) -> UrlGuard:
        return cls(
            allow_private=settings.allow_private_urls,
            ipfs_rpc=settings.ipfs_api_addr,
            resolve=resolve,
        )

    async def check(self, url: str, *, what: str) -> list[str]:
        """Refuse ``url`` (:class:`UnsafeUrl`) or return its checked addresses.

        DNS failures raise :class:`~speak_encoder.errors.NetworkError` (retryable).
        """
        _, host, port = _parse(url, what)
        addresses = await self._resolve(host, port)
        if not addresses:
            raise NetworkError(f"{what}: {host!r} has no address")
        ips = [ipaddress.ip_address(a) for a in addresses]
        if not self.allow_private:
            for ip in ips:
                problem = address_problem(ip)
                if problem is not None:
                    where = "is" if str(ip) == host else f"resolves to {ip},"
                    raise UnsafeUrl(f"{what}: {host} {where} {problem}: refused{_ALLOW_HINT}")
        if self._rpc is not None and port == self._rpc[1]:
            await self._refuse_rpc(ips, host, what)
        return [str(ip) for ip in ips]

    async def _refuse_rpc(self, ips: Iterable[IPAddress], host: str, what: str) -> None:
        assert self._rpc is not None
        rpc_host, rpc_port = self._rpc
        own: set[IPAddress] = set()
        with contextlib.suppress(NetworkError, ValueError):
            own.update(ipaddress.ip_address(a) for a in await self._resolve(rpc_host, rpc_port))
        local: set[IPAddress] | None = None
        for ip in ips:
            mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
            candidates = {ip} if mapped is None else {ip, mapped}
            if any(c.is_loopback or c.is_unspecified or c in own for c in candidates):
                hit = True
            else:
                if local is None:
                    local = await asyncio.to_thread(_local_addresses)
                hit = bool(candidates & local)
            if hit:
                raise UnsafeUrl(
                    f"{what}: {host}:{rpc_port} is the node's own IPFS RPC API: never allowed"
                )

    async def pin(self, url: str, *, what: str) -> PinnedUrl:
        """Check ``url`` and return it with the checked address to connect to."""
        parts, host, _ = _parse(url, what)
        addresses = await self.check(url, what=what)
        address = addresses[0]
        ip = ipaddress.ip_address(address)
        literal = f"[{address}]" if ip.version == 6 else address
        netloc_port = f":{parts.port}" if parts.port is not None else ""
        connect = urlunsplit(
            (parts.scheme, literal + netloc_port, parts.path, parts.query, parts.fragment)
        )
        header_host = f"[{host}]" if ":" in host else host
        return PinnedUrl(
            url=url,
            host=host,
            address=address,
            connect_url=connect,
            host_header=header_host + netloc_port,
        )


async def check_public_url(
    url: str,
    *,
    allow_private: bool,
    what: str,
    ipfs_rpc: str = "",
    resolve: Resolver | None = None,
) -> None:
    """Refuse ``url`` with :class:`UnsafeUrl` unless it is a safe http(s) URL (module doc).

    ``ipfs_rpc`` is ``IPFS_API_ADDR`` (multiaddr or URL): that endpoint is refused even with
    ``allow_private``. DNS failures raise :class:`~speak_encoder.errors.NetworkError`.
    """
    guard = UrlGuard(allow_private=allow_private, ipfs_rpc=ipfs_rpc, resolve=resolve)
    await guard.check(url, what=what)


__all__ = [
    "MAX_URL_LENGTH",
    "PinnedUrl",
    "Resolver",
    "UnsafeUrl",
    "UrlGuard",
    "address_problem",
    "check_public_url",
    "system_resolve",
]
