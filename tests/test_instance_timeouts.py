"""A kept-alive connection's waits, on trio's autojump clock: the idle timeout bounds the wait for
the next request's first byte, the header timeout the rest of its head, the request timeout the
wait for the upstream's answer. An instance over memory streams, answering ACME challenge
requests itself (no Redis), and an upstream connection over a memory stream in its pool."""

from __future__ import annotations

import ssl

import pytest
import trio
import trio.testing

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.proxy.codec import Head
from oauthproxy.proxy.config import PublicPorts, Shared, build_config
from oauthproxy.proxy.guard import Guard
from oauthproxy.proxy.handover import carry
from oauthproxy.proxy.headers import Client
from oauthproxy.proxy.http import Channel
from oauthproxy.proxy.instance import Instance
from oauthproxy.proxy.request import view_of
from oauthproxy.proxy.upstream import UpstreamConnection, UpstreamPool
from oauthproxy.routing import RouteTable

HOSTNAME = "slow.example.com"
IDLE = 75.0
HEADER = 15.0
REQUEST = 120.0
"""The request timeout: longer than two sweeps, so the sweep arms it (`AnswerTimer`)."""
SWEEP = min(IDLE, HEADER) / 4
"""The sweep closes a connection at most this long after its time is up."""

CHALLENGE = b"GET /.well-known/acme-challenge/t HTTP/1.1\r\nHost: slow.example.com\r\n\r\n"


async def _no_challenges(_token: str) -> str | None:
    return None


def _instance() -> Instance:
    target = ProxyTarget.model_validate({"hostname": HOSTNAME, "target_url": "http://127.0.0.1:9"})
    shared = Shared(
        routes=RouteTable.build([]),
        services={},
        proxies={},
        request_timeout=REQUEST,
        guard=Guard(),
        issuer="https://auth.example.com",
        global_users="",
    )
    pool = UpstreamPool(connect_timeout=1, tls=ssl.create_default_context())
    return Instance(
        HOSTNAME,
        build_config(target, shared),
        pool,
        grace=1,
        idle_timeout=IDLE,
        header_timeout=HEADER,
        challenges=_no_challenges,
        ports=PublicPorts(),
    )


async def served(instance: Instance, reader: Channel, first: Head, client: Client) -> None:
    """Hand the connection to `instance` and serve it within its one cancel scope, as a
    listener's task does (`dispatcher.hand_over`)."""
    with trio.CancelScope() as scope:
        view = view_of(first, client.scheme)
        serving = instance.adopt(reader, first, view, client, lambda _host: None, scope)
        assert serving is not None
        await carry(serving)


async def _kept_alive(nursery: trio.Nursery, instance: Instance | None = None) -> trio.abc.Stream:
    """A client connection whose first request the instance has answered (and kept open)."""
    if instance is None:
        instance = _instance()
        await nursery.start(instance.run)
    client, server = trio.testing.memory_stream_pair()
    reader = Channel.of_client(server)
    await client.send_all(CHALLENGE)
    first = await reader.next_event()
    assert isinstance(first, Head)
    client_ = Client(ip="203.0.113.7", trusted=False)
    nursery.start_soon(served, instance, reader, first, client_)
    answer = b""
    while b"unknown_challenge" not in answer:
        answer += await client.receive_some()
    assert answer.startswith(b"HTTP/1.1 404 ")
    return client


async def _closed(client: trio.abc.Stream) -> None:
    while await client.receive_some():
        pass


async def test_a_head_that_began_has_the_header_timeout_however_slowly_it_trickles(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        client = await _kept_alive(nursery)
        await trio.sleep(IDLE / 2)  # idling is allowed
        began = trio.current_time()
        await client.send_all(b"GET /next HTTP/1.1\r\n")

        async def trickle() -> None:
            while True:
                await client.send_all(b"X")  # one byte of a header name at a time
                await trio.sleep(1)

        nursery.start_soon(trickle)
        await _closed(client)
        closed_after = trio.current_time() - began
        nursery.cancel_scope.cancel()
    assert HEADER <= closed_after <= HEADER + SWEEP


async def test_an_idle_connection_has_the_idle_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        client = await _kept_alive(nursery)
        idle_from = trio.current_time()
        await _closed(client)
        closed_after = trio.current_time() - idle_from
        nursery.cancel_scope.cancel()
    assert IDLE <= closed_after <= IDLE + SWEEP


async def test_a_head_that_completes_in_time_is_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        client = await _kept_alive(nursery)
        await trio.sleep(IDLE - SWEEP)
        head = CHALLENGE.replace(b"/t ", b"/u ")
        for byte in range(len(head)):  # the whole head within the header timeout
            await client.send_all(head[byte : byte + 1])
            await trio.sleep((HEADER - SWEEP) / len(head))
        answer = b""
        while b"unknown_challenge" not in answer:
            answer += await client.receive_some()
        assert answer.startswith(b"HTTP/1.1 404 ")
        nursery.cancel_scope.cancel()


async def test_an_answer_later_than_the_request_timeout_gets_a_504_when_it_is_due(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Forwarding only notes when the answer is due; the sweep arms the deadline in time, so the
    504 comes exactly at the request timeout, as with a deadline set per request."""
    assert REQUEST > 2 * SWEEP
    instance = _instance()
    async with trio.open_nursery() as nursery:
        await nursery.start(instance.run)
        assert instance.config is not None
        destination = instance.config.destination("/slow", "GET")
        assert destination is not None
        silent, gateway_end = trio.testing.memory_stream_pair()  # an upstream that never answers
        assert instance.pool.keep(UpstreamConnection(destination.origin, gateway_end))
        client = await _kept_alive(nursery, instance)
        await trio.sleep(IDLE / 2 + 1)  # not on a sweep: it is due between two of them
        began = trio.current_time()
        await client.send_all(b"GET /slow HTTP/1.1\r\nHost: slow.example.com\r\n\r\n")
        assert (await silent.receive_some()).startswith(b"GET /slow HTTP/1.1\r\n")
        answer = b""
        with trio.fail_after(10 * REQUEST):
            while b"\r\n\r\n" not in answer:
                answer += await client.receive_some()
        answered_after = trio.current_time() - began
        nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.1 504 ")
    assert answered_after == pytest.approx(REQUEST)


async def test_a_request_that_stop_cuts_short_gets_no_504(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The request timeout and the instance closing a connection cancel the same scope (the
    connection's one): a request still waiting for its upstream when `stop`'s grace period
    ends is cut, its connection closed without a 504 (which is for the request timeout)."""
    instance = _instance()
    async with trio.open_nursery() as nursery:
        await nursery.start(instance.run)
        assert instance.config is not None
        destination = instance.config.destination("/slow", "GET")
        assert destination is not None
        silent, gateway_end = trio.testing.memory_stream_pair()  # an upstream that never answers
        assert instance.pool.keep(UpstreamConnection(destination.origin, gateway_end))
        client = await _kept_alive(nursery, instance)
        await client.send_all(b"GET /slow HTTP/1.1\r\nHost: slow.example.com\r\n\r\n")
        assert (await silent.receive_some()).startswith(b"GET /slow HTTP/1.1\r\n")
        instance.stop()
        answer = b""
        with trio.fail_after(REQUEST / 2):  # the grace period, well before the request timeout
            while chunk := await client.receive_some():
                answer += chunk
        nursery.cancel_scope.cancel()
    assert answer == b""
