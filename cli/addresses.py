"""The addresses ``flagyard up``'s listeners bind, and the ones to open to reach them.

A listener bound on a wildcard answers on every interface, but a wildcard is no address to open: the
banner and the readiness probes use the loopback of the wildcard's own family. ``::`` needs ``::1``:
asyncio (so uvicorn) binds it IPv6-only, where 127.0.0.1 finds nothing.
"""

from __future__ import annotations

import ipaddress


def is_wildcard(host: str) -> bool:
    """Whether a listener bound on ``host`` answers on every interface: ``*`` and the empty host (asyncio
    binds both families, prometheus_client IPv4), ``0.0.0.0``, ``::`` (bracketed or not)."""
    bare = host.strip("[]")
    if bare in ("", "*"):
        return True
    try:
        return ipaddress.ip_address(bare).is_unspecified
    except ValueError:
        return False


def bind_host(host: str) -> str:
    """``host`` as :meth:`socket.socket.bind` takes it: no brackets, and ``*`` as the empty host."""
    bare = host.strip("[]")
    return "" if bare == "*" else bare


def local_host(host: str) -> str:
    """An address a client on this machine opens to reach a listener bound on ``host``."""
    if not is_wildcard(host):
        return host
    return "::1" if ":" in host else "127.0.0.1"


def url_host(host: str) -> str:
    """``host`` as the host part of a URL or gRPC target (an IPv6 address in brackets)."""
    bare = host.strip("[]")
    return f"[{bare}]" if ":" in bare else bare


def bound(host: str, port: int) -> str:
    """Where a listener binds, as printed: the host as set, and a wildcard says what it means."""
    where = f"{url_host(host or '*')}:{port}"
    return f"{where} (every interface)" if is_wildcard(host) else where
