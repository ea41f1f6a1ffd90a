"""Every socket the gateway listens on, bound before anything else starts.

Binding first (as hypercorn does) makes a taken port a clean start-up error, one line naming the
setting, before Redis, the admin API or any proxy exists; and every port is known, frozen, before
the parts that need it (redirects, the tenant rules, the banner) are built. Accepting starts
later, when there is something to hand connections to: until then the kernel queues them.

With `WORKERS` above 1 the public ports are shared (`SO_REUSEPORT`): the parent binds them
without listening, which claims them (a taken port is the same start-up error) and fixes a port 0
to one number, and each worker binds and listens on that number itself, so the kernel spreads
new connections over the workers. A socket that does not listen gets no connections.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from oauthproxy.api.state import ListenerPorts
from oauthproxy.errors import ListenerError
from oauthproxy.settings import Settings

ADMIN_BACKLOG = 128
PUBLIC_BACKLOG = 65535
"""As `trio.open_tcp_listeners` asks: the kernel caps it at its `somaxconn`."""


class PublicListeners(Protocol):
    """The listeners of the public ports, as the dispatcher serves them."""

    @property
    def http(self) -> Sequence[trio.SocketListener]: ...
    @property
    def https(self) -> Sequence[trio.SocketListener]: ...
    @property
    def proxy_protocol(self) -> Sequence[trio.SocketListener]: ...


@dataclass(frozen=True)
class BoundListeners:
    """The public listeners (not accepting yet) and the admin API's socket, with their ports."""

    http: Sequence[trio.SocketListener]
    https: Sequence[trio.SocketListener]
    proxy_protocol: Sequence[trio.SocketListener]
    admin: socket.socket
    ports: ListenerPorts
    reserved: Sequence[socket.socket] = ()
    """With WORKERS above 1: the public ports, claimed by the parent for its workers."""

    def admin_bind(self) -> str:
        """The admin socket as hypercorn takes a socket it did not bind (`fd://N`); hypercorn
        owns it from then on."""
        return f"fd://{self.admin.detach()}"

    async def aclose(self) -> None:
        """Close what was bound but never served (a later start-up step failed)."""
        for listener in [*self.http, *self.https, *self.proxy_protocol]:
            await listener.aclose()
        for claim in self.reserved:
            claim.close()
        self.admin.close()


async def bind_listeners(settings: Settings) -> BoundListeners:
    """Bind HTTP_PORT, HTTPS_PORT, PROXY_PROTOCOL_PORT and API_PORT, or raise `ListenerError`.
    With WORKERS above 1 the public ports are only claimed, for the workers to listen on."""
    if settings.workers > 1:
        return await _claim_for_workers(settings)
    bound: list[trio.SocketListener] = []
    try:
        http = await _bind_public(settings.server_host, settings.http_port, "HTTP_PORT")
        bound += http
        https = await _bind_public(settings.server_host, settings.https_port, "HTTPS_PORT")
        bound += https
        proxy_protocol = await _bind_public(
            settings.server_host, settings.proxy_protocol_port, "PROXY_PROTOCOL_PORT"
        )
        bound += proxy_protocol
        admin = _bind_admin(settings.api_bind_host, settings.api_port)
    except BaseException:
        for listener in bound:
            await trio.aclose_forcefully(listener)
        raise
    ports = ListenerPorts(
        api=int(admin.getsockname()[1]),
        http=_port(http),
        https=_port(https),
        proxy_protocol=_port(proxy_protocol),
    )
    return BoundListeners(http, https, proxy_protocol, admin, ports)


async def _bind_public(host: str, port: int, name: str) -> list[trio.SocketListener]:
    try:
        return await trio.open_tcp_listeners(port, host=host or None)
    except OSError as error:
        raise ListenerError(
            f"cannot listen on {host or '*'}:{port} ({name}): {error.strerror or error}"
        ) from None


class SharedListeners:
    """A worker's own sockets on the public ports its parent claimed. Each starts listening when
    the dispatcher asks for it, once every proxy runs: until then the kernel gives new
    connections to the workers that already serve (after a restart, nothing waits on this one)."""

    def __init__(self, sockets: Sequence[socket.socket]) -> None:
        self._sockets = sockets

    @property
    def http(self) -> Sequence[trio.SocketListener]:
        return self._port(0)

    @property
    def https(self) -> Sequence[trio.SocketListener]:
        return self._port(1)

    @property
    def proxy_protocol(self) -> Sequence[trio.SocketListener]:
        return self._port(2)

    def _port(self, which: int) -> Sequence[trio.SocketListener]:
        per_port = len(self._sockets) // 3
        mine = self._sockets[which * per_port : (which + 1) * per_port]
        for sock in mine:
            sock.listen(PUBLIC_BACKLOG)
        return [trio.SocketListener(trio.socket.from_stdlib_socket(sock)) for sock in mine]

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


async def open_shared_listeners(settings: Settings) -> SharedListeners:
    """A worker's sockets on HTTP_PORT, HTTPS_PORT and PROXY_PROTOCOL_PORT (the numbers its
    parent claimed), sharing each port with the other workers; bound, not yet listening."""
    opened: list[socket.socket] = []
    try:
        for port, name in _public_ports(settings):
            opened += await _shared_sockets(settings.server_host, port, name, listen=False)
    except BaseException:
        for sock in opened:
            sock.close()
        raise
    return SharedListeners(opened)


def _public_ports(settings: Settings) -> list[tuple[int, str]]:
    return [
        (settings.http_port, "HTTP_PORT"),
        (settings.https_port, "HTTPS_PORT"),
        (settings.proxy_protocol_port, "PROXY_PROTOCOL_PORT"),
    ]


async def _claim_for_workers(settings: Settings) -> BoundListeners:
    claimed: list[socket.socket] = []
    ports: list[int] = []
    try:
        for port, name in _public_ports(settings):
            sockets = await _shared_sockets(settings.server_host, port, name, listen=False)
            claimed += sockets
            ports.append(int(sockets[0].getsockname()[1]))
        admin = _bind_admin(settings.api_bind_host, settings.api_port)
    except BaseException:
        for sock in claimed:
            sock.close()
        raise
    http, https, proxy_protocol = ports
    listener_ports = ListenerPorts(
        api=int(admin.getsockname()[1]), http=http, https=https, proxy_protocol=proxy_protocol
    )
    return BoundListeners((), (), (), admin, listener_ports, reserved=claimed)


async def _shared_sockets(host: str, port: int, name: str, *, listen: bool) -> list[socket.socket]:
    """One `SO_REUSEPORT` socket per address `host` names (as `trio.open_tcp_listeners` binds
    them), all on one port: `port`, or the one the first bind picked when `port` is 0."""
    addresses = await trio.socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, protocol, _name, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, protocol)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            port = int(sock.getsockname()[1])
            if listen:
                sock.listen(PUBLIC_BACKLOG)
    except OSError as error:
        for sock in sockets:
            sock.close()
        raise ListenerError(
            f"cannot listen on {host or '*'}:{port} ({name}): {error.strerror or error}"
        ) from None
    return sockets


def _bind_admin(host: str, port: int) -> socket.socket:
    """The admin API's socket, bound and listening (hypercorn serves it from `fd://`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(ADMIN_BACKLOG)
    except OSError as error:
        sock.close()
        raise ListenerError(
            f"cannot listen on {host}:{port} (API_PORT): {error.strerror or error}"
        ) from None
    return sock


def _port(listeners: Sequence[trio.SocketListener]) -> int:
    return int(listeners[0].socket.getsockname()[1])
