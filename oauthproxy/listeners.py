"""Every socket the gateway listens on, bound before anything else starts.

Binding first (as hypercorn does) makes a taken port a clean start-up error, one line naming the
setting, before Redis, the admin API or any proxy exists; and every port is known, frozen, before
the parts that need it (redirects, the tenant rules, the banner) are built. Accepting starts
later, when there is something to hand connections to: until then the kernel queues them.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from oauthproxy.api.state import ListenerPorts
from oauthproxy.errors import ListenerError
from oauthproxy.settings import Settings

ADMIN_BACKLOG = 128


@dataclass(frozen=True)
class BoundListeners:
    """The public listeners (not accepting yet) and the admin API's socket, with their ports."""

    http: Sequence[trio.SocketListener]
    https: Sequence[trio.SocketListener]
    proxy_protocol: Sequence[trio.SocketListener]
    admin: socket.socket
    ports: ListenerPorts

    def admin_bind(self) -> str:
        """The admin socket as hypercorn takes a socket it did not bind (`fd://N`); hypercorn
        owns it from then on."""
        return f"fd://{self.admin.detach()}"

    async def aclose(self) -> None:
        """Close what was bound but never served (a later start-up step failed)."""
        for listener in [*self.http, *self.https, *self.proxy_protocol]:
            await listener.aclose()
        self.admin.close()


async def bind_listeners(settings: Settings) -> BoundListeners:
    """Bind HTTP_PORT, HTTPS_PORT, PROXY_PROTOCOL_PORT and API_PORT, or raise `ListenerError`."""
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
