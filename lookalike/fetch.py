"""Fetching images by http(s) URL: one module, the trust policy as a parameter.

Two policies:

* `SHOPPER` (the API's `image_url`, untrusted): the host is resolved **once**, every address it
  resolves to must be global (IPv4-mapped, 6to4, NAT64 and Teredo forms are unwrapped and checked
  too; 100.64.0.0/10, which holds cloud metadata addresses, is not global), and the connection
  goes to that pinned address: no second lookup can rebind it. Ports 80 and 443 only, no
  redirects, a total deadline over resolve + connect + download, and a size limit counted while
  streaming. Async, so fetches wait on sockets, not in the thread pool the store calls use.
* `OPERATOR` (catalogue manifests in the ingest job, trusted: the operator wrote them): any host
  and port, redirects followed; lookalike/ingest/fetch.py reads with it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore

MAX_HOST_CHARS = 253
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class FetchError(ValueError):
    """The URL could not be fetched as an image (the message says why)."""


class TooLargeError(FetchError):
    pass


class FetchTimeout(FetchError):
    pass


@dataclass(frozen=True)
class FetchPolicy:
    allow_private: bool = False
    ports: frozenset[int] | None = field(default_factory=lambda: frozenset({80, 443}))
    follow_redirects: bool = False
    max_bytes: int = 10 * 1024 * 1024
    timeout_s: float = 10.0  # connect / each read
    deadline_s: float = 15.0  # the whole fetch, resolve to last byte
    retries: int = 0
    user_agent: str = "lookalike/1"


SHOPPER = FetchPolicy()
OPERATOR = FetchPolicy(allow_private=True, ports=None, follow_redirects=True, retries=2,
                       deadline_s=120.0, user_agent="lookalike-ingest/1")


def embedded_ipv4(addr: IpAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, 6to4, NAT64, Teredo)."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return []
    out = [a for a in (addr.ipv4_mapped, addr.sixtofour) if a is not None]
    if addr.teredo:
        out.extend(addr.teredo)
    if addr in NAT64:
        out.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return out


def is_public(addr: IpAddress) -> bool:
    """Global unicast, and so is every IPv4 address it embeds."""
    return all(a.is_global and not a.is_multicast for a in (addr, *embedded_ipv4(addr)))


def check_host(host: str) -> str:
    """A syntactically sane host name (the label limits DNS has), IDNA-encoded."""
    if not host or len(host) > MAX_HOST_CHARS:
        raise FetchError(f"image_url host must be 1-{MAX_HOST_CHARS} characters")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise FetchError("image_url host is not a valid host name") from None
    if any(not 0 < len(label) <= 63 for label in ascii_host.rstrip(".").split(".")):
        raise FetchError("image_url host is not a valid host name")
    return ascii_host


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FetchError(f"cannot resolve host {host!r}") from None
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as given (Host header, TLS SNI and certificate check)
    port: int
    address: str  # the pinned address the connection goes to
    url: str


async def resolve_target(url: str, policy: FetchPolicy,
                         resolver: Resolver = system_resolver) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError("image_url must be an http(s) URL")
    if parts.username or parts.password:
        raise FetchError("image_url must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError("image_url has an invalid port") from None
    if policy.ports is not None and port not in policy.ports:
        raise FetchError(f"image_url port must be one of {sorted(policy.ports)}")
    host = parts.hostname
    try:
        literal: IpAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addresses = [str(literal)] if literal else await resolver(check_host(host), port)
    if not addresses:
        raise FetchError(f"cannot resolve host {host!r}")
    parsed = [ipaddress.ip_address(a.split("%")[0]) for a in addresses]
    if not policy.allow_private and not all(is_public(a) for a in parsed):
        # Every address must be public: a name that resolves to one public and one private
        # address could otherwise be connected to the private one.
        raise FetchError(f"refusing to fetch from a non-public address ({host})")
    return Target(parts.scheme, host, port, str(parsed[0]), url)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects every request to the address resolved and checked above, whatever the host."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_tcp(self._address, port, timeout=timeout,
                                             local_address=local_address,
                                             socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _download(target: Target, policy: FetchPolicy) -> bytes:
    timeouts = {"connect": policy.timeout_s, "read": policy.timeout_s,
                "write": policy.timeout_s, "pool": policy.timeout_s}
    async with httpcore.AsyncConnectionPool(network_backend=_PinnedBackend(target.address),
                                            max_connections=1) as pool:
        try:
            async with pool.stream("GET", target.url, headers={"User-Agent": policy.user_agent,
                                                               "Accept": "image/*"},
                                   extensions={"timeout": timeouts}) as resp:
                if 300 <= resp.status < 400:
                    raise FetchError("image_url redirected; give the final URL")
                if resp.status >= 400:
                    raise FetchError(f"image_url answered HTTP {resp.status}")
                declared = dict((k.lower(), v) for k, v in resp.headers).get(b"content-length")
                if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                    raise TooLargeError(f"image is larger than {policy.max_bytes} bytes")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.aiter_stream():
                    size += len(chunk)
                    if size > policy.max_bytes:
                        raise TooLargeError(f"image is larger than {policy.max_bytes} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpcore.TimeoutException:
            raise FetchTimeout(f"image_url timed out after {policy.timeout_s:g}s") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol,
                httpcore.LocalProtocolError) as exc:
            raise FetchError(f"cannot fetch image_url: {exc.__class__.__name__}") from None


async def fetch_url(url: str, policy: FetchPolicy = SHOPPER, *,
                    resolver: Resolver = system_resolver) -> bytes:
    """The bytes at `url` under `policy`; FetchError (TooLargeError, FetchTimeout) says why."""

    async def attempt_all() -> bytes:
        target = await resolve_target(url, policy, resolver)  # once: every retry is pinned
        last: FetchError | None = None
        for attempt in range(policy.retries + 1):
            try:
                return await _download(target, policy)
            except (TooLargeError, FetchTimeout):
                raise
            except FetchError as exc:
                last = exc
                if "HTTP 5" not in str(exc) and "cannot fetch" not in str(exc):
                    raise
            if attempt < policy.retries:
                await asyncio.sleep(0.2 * 2 ** attempt)
        raise last or FetchError("cannot fetch image_url")

    try:
        return await asyncio.wait_for(attempt_all(), policy.deadline_s)
    except asyncio.TimeoutError:
        raise FetchTimeout(f"image_url took longer than {policy.deadline_s:g}s") from None
