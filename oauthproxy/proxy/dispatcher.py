"""The public HTTP listener: read a connection's first request, hand it to its hostname's instance.

No TCP relay and no port per hostname: the connection itself moves into the instance's nursery.
An unknown hostname gets a clear 404 here.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import trio

from oauthproxy.proxy.challenges import ChallengeLookup, challenge_reply, is_challenge
from oauthproxy.proxy.headers import Client, Network, is_trusted
from oauthproxy.proxy.http import (
    BadRequest,
    Head,
    PeerClosed,
    Reader,
    close_gently,
    host_of,
    send_reply,
)
from oauthproxy.proxy.instance import Instance, answer, refuse
from oauthproxy.proxy.responses import unknown_host
from oauthproxy.proxy.sockets import LeanSocketStream
from oauthproxy.proxy.tls import TLS_HANDSHAKE_TIMEOUT, HostContext, listener_context

log = logging.getLogger(__name__)

FIRST_REQUEST_TIMEOUT = 30.0
"""A connection that sends no complete request head in this time is closed (slowloris)."""

_ACCEPT_BACKOFF = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


def client_of(stream: trio.SocketStream, trusted: Sequence[Network], scheme: bytes) -> Client:
    try:
        peer = str(stream.socket.getpeername()[0])
    except OSError:
        peer = ""
    return Client(ip=peer, trusted=is_trusted(peer, trusted), scheme=scheme)


async def hand_over(
    stream: trio.abc.Stream,
    lookup: Callable[[str], Instance | None],
    challenges: ChallengeLookup,
    client: Client,
) -> None:
    """Read the first request and give the connection to its instance (or answer it here)."""
    reader = Reader(stream)
    adopted = False
    try:
        with trio.move_on_after(FIRST_REQUEST_TIMEOUT):
            first = await reader.next_event()
            if not isinstance(first, Head):
                return
            if is_challenge(first.target):
                await answer(reader, first, await challenge_reply(first.target, challenges))
                return
            host = host_of(first.headers)
            instance = lookup(host)
            adopted = instance is not None and instance.adopt(reader, first, client)
            if not adopted:
                reply = unknown_host(host, first.header(b"accept"))
                await send_reply(stream, reply, close=True, head=first.method == b"HEAD")
    except BadRequest as error:
        await refuse(reader, error)
    except PeerClosed:
        pass
    finally:
        if not adopted:
            await close_gently(stream)


Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def serve_listener(listener: trio.SocketListener, handle: Handler) -> None:
    """Accept connections forever; each gets a `handle` task in this function's nursery."""
    async with trio.open_nursery() as nursery:
        while True:
            try:
                stream = await listener.accept()
            except OSError as error:
                if error.errno not in _ACCEPT_BACKOFF:
                    raise
                log.warning("accept failed (%s); retrying shortly", errno.errorcode[error.errno])
                await trio.sleep(0.1)
                continue
            nursery.start_soon(_isolated, handle, stream)


async def _isolated(handle: Handler, stream: trio.SocketStream) -> None:
    """Run one connection's hand-over; its failure is logged and ends only that connection."""
    try:
        await handle(stream)
    except Exception:
        log.exception("a connection failed before reaching its proxy")
        await trio.aclose_forcefully(stream)


async def _serve_port(
    host: str,
    port: int,
    handle: Handler,
    shutdown: trio.Event,
    task_status: trio.TaskStatus[int],
) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host or None)
    bound = int(listeners[0].socket.getsockname()[1])
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(serve_listener, listener, handle)
        task_status.started(bound)
        await shutdown.wait()
        nursery.cancel_scope.cancel()


@dataclass(frozen=True)
class Front:
    """What both public listeners share."""

    host: str
    instances: Mapping[str, Instance]
    """The supervisor's hostname → instance table."""
    challenges: ChallengeLookup
    trusted: Sequence[Network]
    shutdown: trio.Event


async def serve_http(
    front: Front, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """The public HTTP port until `shutdown`; started with the port it really listens on.

    Connections already handed to instances belong to them and drain with them.
    """

    async def handle(stream: trio.SocketStream) -> None:
        client = client_of(stream, front.trusted, b"http")
        await hand_over(LeanSocketStream(stream), front.instances.get, front.challenges, client)

    await _serve_port(front.host, port, handle, front.shutdown, task_status)


async def serve_https(
    front: Front, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """The public HTTPS port: the SNI name picks the instance (and its certificate)."""
    instances = front.instances

    def tls_for(hostname: str) -> HostContext | None:
        instance = instances.get(hostname)
        config = instance.config if instance is not None else None
        return config.tls if config is not None else None

    context = listener_context(tls_for)

    async def handle(tcp: trio.SocketStream) -> None:
        client = client_of(tcp, front.trusted, b"https")
        stream = trio.SSLStream(
            LeanSocketStream(tcp), context, server_side=True, https_compatible=True
        )
        try:
            with trio.fail_after(TLS_HANDSHAKE_TIMEOUT):
                await stream.do_handshake()
        except (trio.BrokenResourceError, trio.TooSlowError):
            await trio.aclose_forcefully(stream)
            return
        instance = instances.get(getattr(stream.context, "hostname", ""))
        await hand_over(stream, lambda _host: instance, front.challenges, client)

    await _serve_port(front.host, port, handle, front.shutdown, task_status)
