"""`Instance.drain` (the gateway shuts down) against `Instance.stop` (the proxy was deleted), on
trio's autojump clock over memory streams: what a connection's next request gets, and when its
connection closes. The real process under SIGTERM is tests/test_drain.py."""

from __future__ import annotations

import trio
import trio.testing

from oauthproxy.proxy.codec import Head
from oauthproxy.proxy.headers import Client
from oauthproxy.proxy.http import Channel
from oauthproxy.proxy.instance import LATE_REQUEST_SECONDS, Instance
from tests.test_instance_timeouts import CHALLENGE, _instance, served

NEXT_HEAD = b"GET /.well-known/acme-challenge/u HTTP/1.1\r\n"
NEXT_REST = b"Host: slow.example.com\r\n\r\n"


async def _kept_alive(nursery: trio.Nursery) -> tuple[Instance, trio.abc.Stream]:
    """A running instance and a client connection whose first request it has answered."""
    instance = _instance()
    await nursery.start(instance.run)
    client, server = trio.testing.memory_stream_pair()
    reader = Channel.of_client(server)
    await client.send_all(CHALLENGE)
    first = await reader.next_event()
    assert isinstance(first, Head)
    peer = Client(ip="203.0.113.7", trusted=False)
    nursery.start_soon(served, instance, reader, first, peer)
    assert (await _answer(client)).startswith(b"HTTP/1.1 404 ")
    return instance, client


async def _answer(client: trio.abc.Stream) -> bytes:
    """One short answer (its body names the challenge token it did not know)."""
    answer = b""
    while b"unknown_challenge" not in answer:
        chunk = await client.receive_some()
        assert chunk, f"closed without an answer: {answer!r}"
        answer += chunk
    return answer


async def _closed(client: trio.abc.Stream) -> bool:
    """Whether the instance closed the connection without sending anything more."""
    return await client.receive_some() == b""


async def test_drain_closes_an_idle_connection_at_once_and_then_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        instance, client = await _kept_alive(nursery)
        drained_at = trio.current_time()
        instance.drain()
        assert await _closed(client)
        assert trio.current_time() == drained_at  # not after the idle timeout, nor the grace
        await client.aclose()
    assert trio.current_time() == drained_at  # its last connection gone, the instance ended


async def test_drain_answers_a_request_that_had_begun_and_closes_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        instance, client = await _kept_alive(nursery)
        await client.send_all(NEXT_HEAD)
        await trio.testing.wait_all_tasks_blocked()  # the instance has read the start of it
        instance.drain()
        await client.send_all(NEXT_REST)
        answer = await _answer(client)
        assert answer.startswith(b"HTTP/1.1 404 ")  # the challenge is not known: a real answer
        assert b"\r\nconnection: close\r\n" in answer.lower()
        assert await _closed(client)
        await client.aclose()


async def test_stop_answers_a_request_on_an_open_connection_with_unknown_host(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        instance, client = await _kept_alive(nursery)
        await client.send_all(b"GET / HTTP/1.1\r\n")
        await trio.testing.wait_all_tasks_blocked()
        instance.stop()
        await client.send_all(NEXT_REST)
        answer = b""
        while b"unknown_host" not in answer:
            chunk = await client.receive_some()
            assert chunk, f"closed without an answer: {answer!r}"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 404 ")
        assert await _closed(client)
        await client.aclose()


async def test_stop_closes_an_idle_connection_it_does_not_run_and_ends_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The connection is served in the task that handed it over (here, one of the test's
    nursery), not in the instance's nursery: stopping the instance closes it all the same,
    once requests on their way have had their time, and the instance ends with it."""
    async with trio.open_nursery() as nursery:
        instance, client = await _kept_alive(nursery)
        stopped_at = trio.current_time()
        instance.stop()
        assert await _closed(client)
        assert trio.current_time() == stopped_at + LATE_REQUEST_SECONDS  # not the idle timeout
        await client.aclose()
    assert trio.current_time() == stopped_at + LATE_REQUEST_SECONDS
