"""Upstream connections: where to connect, and a keep-alive pool per instance.

The pool keeps idle connections by origin (scheme, host, port), and only to the origins its
instance targets now (`retarget`): when a target changes, idle connections to the old one close
at once, and one still busy with a request closes when that exchange ends instead of going back
to the pool, where nothing would ever use it again.
"""

from __future__ import annotations

import functools
import select
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import trio

from oauthproxy.proxy.http import Channel
from oauthproxy.proxy.sockets import LeanSocketStream

MAX_IDLE_PER_ORIGIN = 256
"""Above what HTTP/2 clients run at once on a few connections (100 streams each): a pool
smaller than the requests in flight closes and reopens upstream connections under load."""

OriginKey = tuple[str, str, int]
"""What a pooled connection is good for: (scheme, host, port)."""


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int
    base_path: bytes
    """The target URL's path without its trailing slash, prefixed to every request path."""

    @property
    def host_header(self) -> bytes:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (host if self.port == default else f"{host}:{self.port}").encode()

    @functools.cached_property
    def key(self) -> OriginKey:
        """(Made once: the pool looks it up twice per request.)"""
        return (self.scheme, self.host, self.port)

    def target(self, path: bytes) -> bytes:
        return self.base_path + path if self.base_path else path


def parse_origin(url: str) -> Origin:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if scheme == "https" else 80)
    return Origin(scheme, parts.hostname, port, parts.path.rstrip("/").encode())


class UpstreamUnavailable(Exception):
    """The upstream could not be connected to in time."""


@dataclass(eq=False)
class UpstreamConnection:
    origin: Origin
    stream: trio.abc.Stream
    channel: Channel = field(init=False)
    reused: bool = False
    poller: select.poll | None = field(init=False)
    """Its socket, registered once for `UpstreamPool.idle`'s check (None: a stream over no
    socket, as the memory streams of tests/test_instance_timeouts.py, has nothing to ask)."""

    def __post_init__(self) -> None:
        self.channel = Channel.of_upstream(self.stream)
        self.poller = _poller(self.stream)

    @property
    def reusable(self) -> bool:
        """The last exchange ended cleanly, both ways, and the upstream keeps the connection
        open (`Codec.reusable`). An upstream that answered before it had the whole request may
        still be reading (or not reading) its body: the next request on it would wait behind
        those bytes, so our side must have ended its message too."""
        return self.channel.codec.reusable


class UpstreamPool:
    """Idle keep-alive connections by origin, to the origins the instance targets. Owned by one
    instance; closed with it."""

    def __init__(self, *, connect_timeout: float, tls: ssl.SSLContext) -> None:
        self._connect_timeout = connect_timeout
        self._tls = tls
        self._idle: dict[OriginKey, list[UpstreamConnection]] = {}
        self._targets: frozenset[OriginKey] = frozenset()
        """The origins the instance's configuration can send a request to; `retarget` sets it."""

    async def acquire(self, origin: Origin) -> UpstreamConnection:
        """An idle connection to `origin` (`idle`), else a new one."""
        return self.idle(origin) or await self.connect_fresh(origin)

    def idle(self, origin: Origin) -> UpstreamConnection | None:
        """An idle connection to `origin` that nothing arrived on while it waited, else None.
        One the upstream closed meanwhile, or sent bytes on unasked, is closed here: those
        bytes would be read as the next request's answer, another client's (response queue
        poisoning: a backend that let a client split a response sent two). A request sent on
        a connection the upstream closes just after this check fails as any request on a
        closed connection does (`forward.open_upstream` sends one that can be retried again).
        (No await: the common case costs no coroutine.)"""
        idle = self._idle.get(origin.key)
        while idle:
            connection = idle.pop()
            poller = connection.poller
            if poller is not None and poller.poll(0):  # readable, hung up or failed
                _close_now(connection.stream)
                continue
            connection.reused = True
            return connection
        return None

    async def connect_fresh(self, origin: Origin) -> UpstreamConnection:
        return UpstreamConnection(origin, await self._connect(origin))

    async def _connect(self, origin: Origin) -> trio.abc.Stream:
        with trio.move_on_after(self._connect_timeout):
            try:
                if origin.scheme == "https":
                    return await trio.open_ssl_over_tcp_stream(
                        origin.host, origin.port, ssl_context=self._tls, https_compatible=True
                    )
                return LeanSocketStream(
                    (await trio.open_tcp_stream(origin.host, origin.port)).socket
                )
            except OSError as error:
                raise UpstreamUnavailable(
                    f"cannot connect to {origin.host}:{origin.port}: {error.strerror or error}"
                ) from error
        raise UpstreamUnavailable(
            f"connecting to {origin.host}:{origin.port} took longer than {self._connect_timeout:g}s"
        )

    async def release(self, connection: UpstreamConnection) -> None:
        """Keep a finished connection for the next request to its origin, or close it."""
        if not self.keep(connection):
            await trio.aclose_forcefully(connection.stream)

    def keep(self, connection: UpstreamConnection) -> bool:
        """Pool a finished connection for the next request to its origin; False when it cannot
        carry another request, when enough wait already, or when its origin is no longer a
        target (it changed while this exchange ran): then the caller closes it."""
        key = connection.origin.key
        if not (connection.channel.codec.reusable and key in self._targets):
            return False
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle[key] = []
        elif len(idle) >= MAX_IDLE_PER_ORIGIN:
            return False
        idle.append(connection)
        return True

    async def retarget(self, targets: frozenset[OriginKey]) -> None:
        """From now on pool only connections to `targets`; close the idle ones to any other."""
        self._targets = targets
        gone = [key for key in self._idle if key not in targets]
        for key in gone:
            for connection in self._idle.pop(key):
                await trio.aclose_forcefully(connection.stream)

    async def clear(self) -> None:
        """Close every idle connection and pool none any more (the instance stops)."""
        await self.retarget(frozenset())


def _poller(stream: trio.abc.Stream) -> select.poll | None:
    """A poll of the stream's socket for input: whether an idle connection's socket is readable
    (or hung up, or failed), that is, the upstream closed it or sent what nobody asked for.
    Either way it carries no request. Forwarding never looks at sockets: the pool asks before
    it hands one out. (One poll object per connection, registered once: each check is then one
    call and one `poll` system call. Not `select.select`: it refuses descriptors past 1023.)"""
    if isinstance(stream, LeanSocketStream):
        fd = stream.fd
    elif (tcp := _under_tls(stream)) is not None:
        fd = tcp.socket.fileno()
    else:
        return None
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return poller


def _close_now(stream: trio.abc.Stream) -> None:
    """Close an idle connection at once (no task waits on it); a TLS one without its
    close_notify, as `trio.aclose_forcefully` closes it."""
    if isinstance(stream, LeanSocketStream):
        stream.close_socket()
    elif (tcp := _under_tls(stream)) is not None:
        tcp.socket.close()


def _under_tls(stream: trio.abc.Stream) -> trio.SocketStream | None:
    """The TCP stream under an https upstream's connection (`_connect`), else None."""
    transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else None
    return transport if isinstance(transport, trio.SocketStream) else None


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Verification for https:// upstreams: the system store, or `UPSTREAM_CA_BUNDLE`."""
    return ssl.create_default_context(cafile=ca_bundle)
