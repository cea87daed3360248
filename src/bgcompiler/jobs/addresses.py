"""Where a callback may go: never to this machine or a private network, unless allowed.

A callback URL is checked when the job is submitted (a clear 422), and again when it is
called: the resolver that the delivery connects through drops private addresses, so a name
that resolves differently later (DNS rebinding) still cannot reach inside.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from bgcompiler.errors import InvalidRequest


def is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def checked_url(url: str) -> tuple[str, int]:
    """The host and port of an http(s) URL; InvalidRequest otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"callback_url is not a URL: {exc}", "callback_url") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("callback_url must be an http:// or https:// URL", "callback_url")
    if parts.username or parts.password:
        raise InvalidRequest("callback_url must not carry credentials", "callback_url")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


class PublicResolver(AbstractResolver):
    """aiohttp's resolver, keeping only public addresses (all, when private ones are allowed)."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        kept = [entry for entry in found if self._allow_private or not is_private(entry["host"])]
        if not kept:
            raise OSError(f"{host} resolves only to private addresses")
        return kept

    async def close(self) -> None:
        await self._inner.close()


async def check_callback(url: str, resolver: PublicResolver, **_: Any) -> None:
    """422 naming callback_url unless it is http(s) and resolves to an allowed address."""
    host, port = checked_url(url)
    try:
        await resolver.resolve(host, port, socket.AF_UNSPEC)
    except OSError as exc:
        raise InvalidRequest(
            f"callback_url cannot be called: {exc} (private, loopback, link-local and "
            "multicast addresses are refused unless --webhook-allow-private)",
            "callback_url",
        ) from exc
