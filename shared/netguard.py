"""Which customer endpoint URLs hookline may call.

Only http and https, and only hosts whose every resolved address is public: a
webhook URL must not become a way to reach hookline's own network (metadata
services, databases, localhost). Checked when an endpoint is saved and again
on every new connection (``create_connection`` connects only to an address it
has just vetted, so DNS that changes after the check cannot slip through).
HOOKLINE_ALLOW_PRIVATE_ENDPOINTS lifts the address rule (development, tests).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from concurrent.futures import Future
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# How long saving an endpoint waits for its host to resolve (the API request waits).
CHECK_RESOLVE_SECONDS = 5.0
# Lookups running at once per process. One the caller stopped waiting for runs on
# until the resolver gives up; during a DNS outage this bounds how many pile up.
MAX_LOOKUPS = 32
_lookups = threading.BoundedSemaphore(MAX_LOOKUPS)


def _fresh_lookups() -> None:
    global _lookups
    _lookups = threading.BoundedSemaphore(MAX_LOOKUPS)  # the parent's lookups stay there


os.register_at_fork(after_in_child=_fresh_lookups)


class UnsafeURL(ValueError):
    """The URL may not be called; the message says why."""


# Order matters: 127.0.0.1 is both loopback and private (and 240.0.0.1 both
# reserved and private); the more specific answer is the more useful one.
_CHECKS: tuple[tuple[str, str], ...] = (
    ("is_unspecified", "an unspecified address"),
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address"),
    ("is_multicast", "a multicast address"),
    ("is_reserved", "a reserved address"),
    ("is_private", "a private address"),
)


def _embedded(ip: IPAddress) -> IPAddress | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo), if any."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.teredo is not None:
            return ip.teredo[1]
    return None


def address_refusal(ip: IPAddress) -> str | None:
    """Why this address may not be called, or None when it is public."""
    inner = _embedded(ip)
    if inner is not None:
        why = address_refusal(inner)
        return f"{why} (inside {ip})" if why else None
    for attr, why in _CHECKS:
        if getattr(ip, attr):
            return why
    if not ip.is_global:
        return "not a public address"
    return None


def parse(url: str) -> SplitResult:
    """Check the URL's form (scheme, host, no credentials); raises UnsafeURL."""
    if not isinstance(url, str) or not url.strip():
        raise UnsafeURL("url must be a non-empty string")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL(f"url scheme must be http or https, got {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise UnsafeURL("url has no host")
    if parts.username or parts.password:
        raise UnsafeURL("url must not contain credentials (they would show in listings)")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise UnsafeURL(f"url has a bad port: {exc}") from None
    return parts


def _getaddrinfo(host: str, port: int, timeout: float | None) -> list:
    """socket.getaddrinfo within ``timeout``. The C resolver takes no deadline
    (glibc waits 5 s per name server and try), and a send must end within the
    delivery timeout or it outlives its claim, so the lookup runs in a daemon
    thread that the caller stops waiting for; a lookup left behind ends when the
    resolver gives up."""
    if timeout is None:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    deadline = time.monotonic() + timeout
    slots = _lookups
    if not slots.acquire(timeout=timeout):
        raise TimeoutError(f"host {host!r} not resolved: {MAX_LOOKUPS} lookups are still running")
    answer: Future[list] = Future()

    def lookup() -> None:
        try:
            answer.set_result(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except BaseException as exc:  # handed to the caller
            answer.set_exception(exc)
        finally:
            slots.release()

    try:
        threading.Thread(target=lookup, name="hookline-resolve", daemon=True).start()
    except RuntimeError as exc:  # no thread to be had
        slots.release()
        raise OSError(f"host {host!r} not resolved: {exc}") from None
    try:
        return answer.result(max(0.0, deadline - time.monotonic()))
    except TimeoutError:  # concurrent.futures' timeout is the builtin one
        raise TimeoutError(f"host {host!r} did not resolve within {timeout:g}s") from None


def resolve(host: str, port: int, timeout: float | None = None) -> list[tuple[IPAddress, tuple]]:
    try:
        infos = _getaddrinfo(host, port, timeout)
    except socket.gaierror as exc:
        raise UnsafeURL(f"host {host!r} does not resolve: {exc.strerror}") from None
    out = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
            out.append((ip, sockaddr))
    return out


def allowed_addresses(host: str, port: int, allow_private: bool,
                      timeout: float | None = None) -> list[tuple]:
    """Sockaddrs of ``host`` that may be connected to; raises UnsafeURL if none,
    TimeoutError if the name does not resolve within ``timeout``."""
    resolved = resolve(host, port, timeout)
    if not resolved:
        raise UnsafeURL(f"host {host!r} has no IPv4 or IPv6 address")
    if allow_private:
        return [sockaddr for _, sockaddr in resolved]
    refused = [(ip, address_refusal(ip)) for ip, _ in resolved]
    bad = [(ip, why) for ip, why in refused if why]
    if bad:
        # One bad address refuses the host: a name that resolves to both a
        # public and a private address is exactly what rebinding tricks use.
        ip, why = bad[0]
        raise UnsafeURL(f"host {host!r} resolves to {ip}, {why} "
                        "(set HOOKLINE_ALLOW_PRIVATE_ENDPOINTS=true to allow it)")
    return [sockaddr for _, sockaddr in resolved]


def default_port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def check_url(url: str, allow_private: bool) -> str:
    """Validate a URL for an endpoint; returns it stripped, raises UnsafeURL."""
    parts = parse(url)
    try:
        allowed_addresses(parts.hostname or "", default_port(parts), allow_private,
                          CHECK_RESOLVE_SECONDS)
    except TimeoutError as exc:
        raise UnsafeURL(str(exc)) from None
    return url.strip()


def create_connection(
    address: tuple[str, int], timeout: float | None, allow_private: bool,
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    """socket.create_connection that connects only to vetted addresses. With a
    timeout, resolving and connecting together take at most that long, however
    many addresses the host has (each gets an even share of what is left); the
    socket keeps ``timeout`` for each read."""
    host, port = address
    deadline = None if timeout is None else time.monotonic() + timeout
    error: OSError | None = None
    addresses = allowed_addresses(host, port, allow_private, timeout)
    for n, sockaddr in enumerate(addresses):
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TimeoutError(f"no connection to {host!r} within {timeout:g}s")
        if left is not None:
            # An even share of what is left: an address that drops packets (a
            # broken IPv6 route) must leave time to try the next.
            left /= len(addresses) - n
        family = socket.AF_INET6 if len(sockaddr) == 4 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(left)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            sock.settimeout(timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    assert error is not None
    raise error
