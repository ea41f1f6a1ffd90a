"""The request log end to end: real gateway, real backends, real Redis, queried over the API."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trio

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.backend import serve_backend
from tests.conftest import Mint
from tests.eventually import eventually

SLOW_SECONDS = 0.3
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


@pytest.fixture
async def logged(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> Ready:
    """A gateway whose slow threshold is short, so the slow test stays short."""
    settings = make_settings(log_slow_seconds=SLOW_SECONDS)
    ready: Ready = await nursery.start(
        lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
    )
    return ready


@pytest.fixture
async def admin(logged: Ready) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {logged.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=logged.api_url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
async def backend(nursery: trio.Nursery) -> int:
    port: int = await nursery.start(functools.partial(serve_backend, "one"))
    return port


def client_from(ready: Ready, source_ip: str) -> httpx.AsyncClient:
    """A public-port client whose connections come from `source_ip` (any 127.0.0.0/8 address)."""
    transport = httpx.AsyncHTTPTransport(local_address=source_ip, limits=NO_KEEPALIVE)
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{ready.http_port}", transport=transport, timeout=30
    )


async def create_proxy(storage: Storage, hostname: str, port: int, **fields: Any) -> None:
    await storage.proxies.create(
        ProxyTarget.model_validate(
            {"hostname": hostname, "target_url": f"http://127.0.0.1:{port}", **fields}
        )
    )


async def served(client: httpx.AsyncClient, hostname: str) -> None:
    """Wait until the gateway serves `hostname` (probe requests carry no log-worthy marks)."""

    async def known() -> bool:
        return (await client.get("/echo/probe", headers={"Host": hostname})).status_code != 404

    await eventually(known, what=f"{hostname} known")


async def logs(admin: httpx.AsyncClient, endpoint: str, **params: Any) -> list[dict[str, Any]]:
    response = await admin.get(f"/api/v1/logs/{endpoint}", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["logs"]
    return found


async def eventually_logged(
    admin: httpx.AsyncClient, count: int, **params: Any
) -> list[dict[str, Any]]:
    """The search's entries once there are `count` of them (batches land every 100 ms)."""

    async def enough() -> list[dict[str, Any]] | None:
        found = await logs(admin, "search", **params)
        return found if len(found) >= count else None

    return await eventually(enough, what=f"{count} log entries for {params}")


async def settled(admin: httpx.AsyncClient, client: httpx.AsyncClient, hostname: str) -> None:
    """Clear the log once every earlier request is in it (batches are written in order, so a
    marker request logged means all before it are)."""
    await client.get("/echo/settle-marker", headers={"Host": hostname})
    await eventually_logged(admin, 1, q="settle-marker")
    assert (await admin.delete("/api/v1/logs")).status_code == 200


async def last_after_the_clear(admin: httpx.AsyncClient) -> str:
    """The stream's last id once the clearing's own audit event is in it (`settled`): a follow
    after an id read before it came answers that event (it is written in a batch of its own,
    a moment after the DELETE answered), and no request."""

    async def after_the_clear() -> str | None:
        newest = (await admin.get("/api/v1/logs/follow", params={"limit": 1})).json()
        cleared = [e for e in newest["logs"] if e["event"] == "admin.write"]
        return str(newest["last"]) if cleared else None

    return await eventually(after_the_clear, what="the clearing's audit event")


def paths(entries: list[dict[str, Any]]) -> list[str]:
    """The requests' paths (events, such as the admin write that cleared the log, left out)."""
    return sorted(entry["request_path"] for entry in entries if entry["event"] == "request")


async def test_each_filter_returns_exactly_the_requests_made(
    logged: Ready, admin: httpx.AsyncClient, storage: Storage, backend: int, mint: Mint
) -> None:
    await create_proxy(storage, "one.example.com", backend)
    await create_proxy(
        storage, "two.example.com", backend, auth_enabled=True, auth_required_users=["*"]
    )
    token = await mint(f"http://two.example.com:{logged.http_port}", azp="client-7")
    async with client_from(logged, "127.0.0.1") as first, client_from(logged, "127.0.0.2") as other:
        await served(first, "one.example.com")
        await served(first, "two.example.com")
        await settled(admin, first, "one.example.com")
        one, two = {"Host": "one.example.com"}, {"Host": f"two.example.com:{logged.http_port}"}
        assert (await first.get("/echo/a?x=1", headers=one)).status_code == 200
        assert (await first.get("/status/503", headers=one)).status_code == 503
        assert (await other.get("/echo/b", headers=one)).status_code == 200
        assert (await other.get(f"/slow/{SLOW_SECONDS + 0.1}", headers=one)).status_code == 200
        assert (await other.post("/echo/c", headers=one, content=b"12345")).status_code == 200
        authorized = {**two, "Authorization": f"Bearer {token}"}
        assert (await first.get("/echo/d", headers=authorized)).status_code == 200
        assert (await first.get("/echo/e", headers=two)).status_code == 401
        nobody = {"Host": "nobody.example.com"}
        assert (await first.get("/echo/f", headers=nobody)).status_code == 404

    everything = await eventually_logged(admin, 8, event="request")
    assert len(everything) == 8
    assert paths(await logs(admin, "ip/127.0.0.2")) == [
        "/echo/b", "/echo/c", f"/slow/{SLOW_SECONDS + 0.1}"
    ]  # fmt: skip
    assert paths(await logs(admin, "search", hostname="two.example.com")) == ["/echo/d", "/echo/e"]
    assert paths(await logs(admin, "search", user="alice")) == ["/echo/d"]
    assert paths(await logs(admin, "client/client-7")) == ["/echo/d"]
    assert paths(await logs(admin, "search", status=503)) == ["/status/503"]
    assert paths(await logs(admin, "search", path="/echo/a")) == ["/echo/a?x=1"]
    assert paths(await logs(admin, "search", method="POST", path="/echo/c")) == ["/echo/c"]
    assert paths(await logs(admin, "errors")) == ["/echo/e", "/echo/f", "/status/503"]
    slow = paths(await logs(admin, "search", slow="true"))
    assert f"/slow/{SLOW_SECONDS + 0.1}" in slow  # its backend waits longer than the threshold
    # Any other request may take that long too on a busy machine (/echo/d, its token checked,
    # did under 4 xdist workers on 2 cores): the filter returns exactly those that did.
    took = {entry["request_path"]: float(entry["duration_ms"]) for entry in everything}
    assert slow == sorted(path for path, ms in took.items() if ms >= SLOW_SECONDS * 1000)
    assert paths(await logs(admin, "search", q="status:401 host:two.example.com")) == ["/echo/e"]
    assert paths(await logs(admin, "search", level="ERROR")) == ["/status/503"]

    by_path = {entry["request_path"]: entry for entry in everything}
    upload = by_path["/echo/c"]
    assert upload["client_ip"] == "127.0.0.2"
    assert upload["method"] == "POST"
    assert int(upload["bytes_in"]) > 5
    assert int(upload["bytes_out"]) > 0
    assert upload["upstream"] == f"http://127.0.0.1:{backend}"
    assert upload["gateway_reason"] == ""
    assert by_path["/echo/e"]["gateway_reason"] == "unauthorized"
    assert by_path["/echo/f"]["gateway_reason"] == "unknown_host"
    assert by_path["/echo/d"]["client_id"] == "client-7"
    assert float(by_path[f"/slow/{SLOW_SECONDS + 0.1}"]["duration_ms"]) >= SLOW_SECONDS * 1000

    stats = (await admin.get("/api/v1/logs/events", params={"hours": 1})).json()
    assert stats["requests"] >= 8
    hosts = {row["hostname"]: row for row in stats["hosts"]}
    assert hosts["one.example.com"]["unique_ips"] == 2
    assert hosts["one.example.com"]["p50_ms"] > 0
    assert stats["logger"]["dropped"] == 0


async def test_bad_filters_are_refused_naming_the_field(admin: httpx.AsyncClient) -> None:
    for path, params, field in [
        ("search", {"status": "abc"}, "status"),
        ("search", {"limit": "0"}, "limit"),
        ("search", {"hours": "-1"}, "hours"),
        ("search", {"level": "LOUD"}, "level"),
        ("search", {"colour": "red"}, "colour"),
        ("ip/not-an-ip", {}, "ip"),
        ("follow", {"after": "x"}, "after"),
        # a stream id Redis itself refuses: was a 503 "Redis is not reachable" (a false outage)
        ("follow", {"after": "99999999999999999999-0", "wait": "0"}, "after"),
        ("follow", {"after": "0-18446744073709551616", "wait": "0"}, "after"),
        ("follow", {"after": "18446744073709551615-18446744073709551615", "wait": "0"}, "after"),
        # each bare word is looked for in each of up to 5,000 entries: the count is bounded
        ("search", {"q": "7 " * 248 + "zzz"}, "q"),
    ]:
        response = await admin.get(f"/api/v1/logs/{path}", params=params)
        assert response.status_code in (400, 422), (path, response.text)
        assert field in response.text, (path, response.text)
    largest = "18446744073709551615-18446744073709551614"
    answer = await admin.get("/api/v1/logs/follow", params={"after": largest, "wait": "0"})
    assert (answer.status_code, answer.json()["count"]) == (200, 0)
    twenty = " ".join(["zzz"] * 19 + ["status:200"])
    assert (await admin.get("/api/v1/logs/search", params={"q": twenty})).status_code == 200


async def test_owners_see_only_their_hostnames(
    logged: Ready, admin: httpx.AsyncClient, backend: int
) -> None:
    owners: dict[str, httpx.AsyncClient] = {}
    for name in ("ann", "bob"):
        secret = (await admin.post("/api/v1/tokens/generate", json={"name": name})).json()["token"]
        owners[name] = httpx.AsyncClient(
            base_url=logged.api_url, headers={"Authorization": f"Bearer {secret}"}
        )
        created = await owners[name].post(
            "/api/v1/proxy/targets/",
            json={"hostname": f"{name}.example.com", "target_url": f"http://127.0.0.1:{backend}"},
        )
        assert created.status_code == 201, created.text
    try:
        async with client_from(logged, "127.0.0.1") as public:
            for name in ("ann", "bob"):
                await served(public, f"{name}.example.com")
                await public.get(f"/echo/{name}-page", headers={"Host": f"{name}.example.com"})
        await eventually_logged(admin, 2, q="page")
        for name, other in (("ann", "bob"), ("bob", "ann")):
            mine = await logs(owners[name], "search", q="page")
            assert paths(mine) == [f"/echo/{name}-page"]
            assert await logs(owners[name], "search", hostname=f"{other}.example.com") == []
            by_ip = await logs(owners[name], "ip/127.0.0.1", hours=1)
            assert by_ip and {e["hostname"] for e in by_ip} == {f"{name}.example.com"}
            refused = await owners[name].delete("/api/v1/logs")
            assert refused.status_code == 403, refused.text
        assert paths(await logs(admin, "search", q="page")) == ["/echo/ann-page", "/echo/bob-page"]
    finally:
        for client in owners.values():
            await client.aclose()


async def test_follow_returns_entries_after_the_last_seen(
    logged: Ready, admin: httpx.AsyncClient, storage: Storage, backend: int
) -> None:
    await create_proxy(storage, "tail.example.com", backend)
    async with client_from(logged, "127.0.0.1") as public:
        await served(public, "tail.example.com")
        await settled(admin, public, "tail.example.com")
        start = await last_after_the_clear(admin)
        await public.get("/echo/followed", headers={"Host": "tail.example.com"})
        answer = (
            await admin.get("/api/v1/logs/follow", params={"after": start, "wait": 10})
        ).json()
    assert paths(answer["logs"]) == ["/echo/followed"]
    again = await admin.get("/api/v1/logs/follow", params={"after": answer["last"], "wait": 0})
    assert paths(again.json()["logs"]) == []


async def test_a_waiting_follow_answers_with_the_request_made_meanwhile(
    logged: Ready, admin: httpx.AsyncClient, storage: Storage, backend: int
) -> None:
    await create_proxy(storage, "poll.example.com", backend)
    async with client_from(logged, "127.0.0.1") as public:
        await served(public, "poll.example.com")
        await settled(admin, public, "poll.example.com")
        start = await last_after_the_clear(admin)
        answers: list[dict[str, Any]] = []

        async def follow() -> None:
            params: dict[str, str | int] = {"after": start, "wait": 25}
            answers.append((await admin.get("/api/v1/logs/follow", params=params)).json())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await trio.sleep(1)  # the follow is waiting: nothing new yet
            assert answers == []
            await public.get("/echo/long-polled", headers={"Host": "poll.example.com"})
    assert paths(answers[0]["logs"]) == ["/echo/long-polled"]


async def test_clear_deletes_every_log_key(
    logged: Ready, admin: httpx.AsyncClient, storage: Storage, backend: int
) -> None:
    await create_proxy(storage, "gone.example.com", backend)
    async with client_from(logged, "127.0.0.1") as public:
        await served(public, "gone.example.com")
        # every probe logged before the clearing (batches land in order: the marker last), else
        # one logged just after it read as a key the clearing left
        await public.get("/echo/clear-marker", headers={"Host": "gone.example.com"})
    await eventually_logged(admin, 1, q="clear-marker")
    cleared = await admin.delete("/api/v1/logs")
    assert cleared.status_code == 200 and cleared.json()["deleted"] > 0

    async def only_the_clearing() -> list[dict[str, Any]] | None:
        """What the log holds once the clearing's own audit event, logged after it, is in."""
        entries = (await admin.get("/api/v1/logs/follow", params={"limit": 10})).json()["logs"]
        return entries if any(e["event"] == "admin.write" for e in entries) else None

    entries = await eventually(only_the_clearing, what="the clearing's audit event")
    assert [(e["event"], e["method"], e["request_path"]) for e in entries] == [
        ("admin.write", "DELETE", "/api/v1/logs")
    ]
    left = [key async for key in storage.log_redis.scan_iter(match="*")]
    assert not [key for key in left if "gone.example.com" in key or key.startswith("stats:")]
    assert await storage.proxies.get("gone.example.com") is not None


async def test_the_log_keeps_out_of_the_configurations_database(
    logged: Ready, admin: httpx.AsyncClient, storage: Storage, backend: int
) -> None:
    """Listings scan the configuration's database: the log's keys (several per request) must not
    be there, or every list and create of the admin API slows down as the log grows."""
    await create_proxy(storage, "apart.example.com", backend)
    async with client_from(logged, "127.0.0.1") as public:
        await served(public, "apart.example.com")
    await eventually_logged(admin, 1)
    configuration = [key async for key in storage.redis.scan_iter(match="*")]
    assert not [key for key in configuration if key.startswith(("req:", "idx:req:", "stats:"))]
    assert [key async for key in storage.log_redis.scan_iter(match="req:*")]


async def test_every_log_key_expires(
    logged: Ready, admin: httpx.AsyncClient, storage: Storage, backend: int
) -> None:
    await create_proxy(storage, "ttl.example.com", backend)
    async with client_from(logged, "127.0.0.1") as public:
        await served(public, "ttl.example.com")
    await eventually_logged(admin, 1)
    checked = 0
    async for key in storage.log_redis.scan_iter(match="*"):
        if key.startswith(("req:", "idx:req:", "stream:", "stats:")):
            assert 0 < await storage.log_redis.ttl(key) <= 24 * 3600, key
            checked += 1
    assert checked


async def test_logging_off_writes_nothing(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings], backend: int
) -> None:
    settings = make_settings(request_log_enabled=False)
    ready: Ready = await nursery.start(
        lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
    )
    await create_proxy(storage, "quiet.example.com", backend)
    async with client_from(ready, "127.0.0.1") as public:
        await served(public, "quiet.example.com")
        for _ in range(5):
            await public.get("/echo", headers={"Host": "quiet.example.com"})
    headers = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=ready.api_url, headers=headers) as admin:
        stats = (await admin.get("/api/v1/logs/events")).json()
    logger = stats["logger"]
    assert (logger["enabled"], logger["written"], logger["dropped"]) == (False, 0, 0)
    assert [key async for key in storage.log_redis.scan_iter(match="req:*")] == []


async def test_the_next_owner_of_a_hostname_does_not_see_its_earlier_traffic(
    logged: Ready, admin: httpx.AsyncClient, backend: int
) -> None:
    """Entries belong to a hostname's owner; a hostname given up (its proxy deleted, or its
    token deleted) may be claimed by another owner, who must not read the first one's traffic
    (client IPs, users, paths) that the log still keeps."""
    owners: dict[str, httpx.AsyncClient] = {}
    for name in ("ann", "bob"):
        secret = (await admin.post("/api/v1/tokens/generate", json={"name": name})).json()["token"]
        owners[name] = httpx.AsyncClient(
            base_url=logged.api_url, headers={"Authorization": f"Bearer {secret}"}
        )
    proxy = {"hostname": "reused.example.com", "target_url": f"http://127.0.0.1:{backend}"}
    try:
        async with client_from(logged, "127.0.0.1") as public:
            assert (await owners["bob"].post("/api/v1/proxy/targets/", json=proxy)).is_success
            await served(public, "reused.example.com")
            await public.get("/echo/bob-page", headers={"Host": "reused.example.com"})
            [entry] = await eventually_logged(admin, 1, q="bob-page")
            assert paths(await logs(owners["bob"], "search", q="page")) == ["/echo/bob-page"]
            deleted = await owners["bob"].delete("/api/v1/proxy/targets/reused.example.com")
            assert deleted.status_code == 200, deleted.text
            # a proxy's created_at is in whole seconds: claim it in a later second than bob's
            await trio.sleep(max(0.0, int(entry["timestamp"]) + 1 - time.time()))
            assert (await owners["ann"].post("/api/v1/proxy/targets/", json=proxy)).is_success
            await served(public, "reused.example.com")
            await public.get("/echo/ann-page", headers={"Host": "reused.example.com"})
            await eventually_logged(admin, 2, q="page")
        ann = owners["ann"]
        assert paths(await logs(ann, "search", q="page")) == ["/echo/ann-page"]
        followed = (await ann.get("/api/v1/logs/follow", params={"limit": 1000})).json()["logs"]
        for seen in (
            await logs(ann, "search", hostname="reused.example.com"),
            await logs(ann, "ip/127.0.0.1", hours=1),
            followed,
        ):
            assert "/echo/ann-page" in paths(seen)
            assert "/echo/bob-page" not in paths(seen)
            assert min(e["timestamp"] for e in seen) > entry["timestamp"]  # bob's events too
        assert paths(await logs(admin, "search", q="page")) == ["/echo/ann-page", "/echo/bob-page"]
    finally:
        for client in owners.values():
            await client.aclose()


async def test_a_recreated_hostnames_response_times_start_again(
    logged: Ready, admin: httpx.AsyncClient, storage: Storage, backend: int
) -> None:
    """Response-time percentiles (`stats:durations:{hostname}`) are kept per hostname, not per
    proxy: after one owner's proxy was deleted and another owner made one for the same
    hostname, the new owner's statistics showed the earlier owner's response times (its
    visitors are cut at the proxy's creation, its durations were not)."""
    hostname = "reused.example.com"
    await create_proxy(storage, hostname, backend)
    async with client_from(logged, "127.0.0.1") as client:
        await served(client, hostname)
        for _ in range(3):
            earlier = await client.get("/echo/earlier", headers={"Host": hostname})
            assert earlier.status_code == 200
        await client.get("/echo/recreate-marker", headers={"Host": hostname})
    await eventually_logged(admin, 1, q="recreate-marker")  # batches land in order: all are in
    stats = (await admin.get("/api/v1/logs/events", params={"hours": 1})).json()
    assert "p50_ms" in {row["hostname"]: row for row in stats["hosts"]}[hostname]
    await storage.proxies.delete(hostname)
    created = await admin.post("/api/v1/tokens/generate", json={"name": "later-owner"})
    assert created.status_code == 201, created.text
    later = {"Authorization": f"Bearer {created.json()['token']}"}
    body = {"hostname": hostname, "target_url": f"http://127.0.0.1:{backend}"}
    made = await admin.post("/api/v1/proxy/targets/", json=body, headers=later)
    assert made.status_code == 201, made.text
    stats = await admin.get("/api/v1/logs/events", params={"hours": 1}, headers=later)
    assert stats.status_code == 200, stats.text
    (row,) = stats.json()["hosts"]
    assert row["hostname"] == hostname
    assert not [name for name in row if name.endswith("_ms")], row  # none of its own yet


@pytest.mark.parametrize("shut", ["suspend", "delete"])
async def test_a_waiting_follow_ends_when_its_token_is_shut(
    logged: Ready, admin: httpx.AsyncClient, shut: str
) -> None:
    """A thief holding a leaked token keeps long polls of /api/v1/logs/follow open (25 s each,
    one after another): the token was checked once, when each poll opened, so one the admin
    suspended or deleted still got the entries that came in while it waited. The caller is
    authenticated again every few seconds of the wait: the poll answers the 401 instead."""
    from tests.test_proxies_api import as_new_token

    async with as_new_token(admin, logged, "leaky") as thief:
        start = (await thief.get("/api/v1/logs/follow", params={"limit": 1})).json()["last"]
        answers: list[httpx.Response] = []

        async def follow() -> None:
            params: dict[str, str | int] = {"after": start, "wait": 25}
            answers.append(await thief.get("/api/v1/logs/follow", params=params, timeout=30))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await trio.sleep(0.5)  # the follow is waiting
            if shut == "suspend":
                done = await admin.put("/api/v1/tokens/leaky/suspended", json={})
            else:
                done = await admin.delete("/api/v1/tokens/leaky")
            assert done.status_code == 200, done.text
    assert answers[0].status_code == 401, answers[0].text
