"""WORKERS=2 as a user runs it: two worker processes under one parent, both serving the public
port, a proxy created after start served by both, a killed worker started again, and SIGTERM to
the parent draining what is in flight before every process is gone.

Which worker answered is read from the parent's `/metrics` (each worker's counters carry a
`worker` label), which is what an operator sees too; nothing about it reaches the clients.
"""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from oauthproxy.settings import MAX_WORKERS, SettingsError, load_settings
from oauthproxy.storage import Storage
from oauthproxy.workers.metrics import merged_exposition
from oauthproxy.workers.reports import read_reports
from tests.conftest import free_port, venv_bin
from tests.eventually import eventually
from tests.test_data_loss import _has_problem, empty_redis
from tests.test_drain import GUARD_SECONDS, HeldBackend, _environment
from tests.test_http_conformance import Wire, request, response
from tests.test_process import RunningGateway, _alive, started_gateway

HOST = "workers.example.com"
WORKER_MODULE = b"oauthproxy.workers.worker"
BATCH = 16
"""New connections per round while waiting for both workers to answer: the kernel spreads
connections over the workers by a hash of the client's address and port."""


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def _workers(parent: int) -> set[int]:
    """The parent's children that are data-plane workers (the others: none here, since the
    test's Redis is external)."""
    workers = set()
    for child in _children(parent):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if WORKER_MODULE in command and _alive(child):
            workers.add(child)
    return workers


def _listening(port: int) -> int:
    """How many TCP sockets listen on `port` (`/proc/net/tcp`: state 0A is LISTEN)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        count += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
    return count


async def _metrics(gateway: RunningGateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the parent's `/metrics`: (name, sorted labels) → value."""
    headers = {"Authorization": f"Bearer {gateway.admin_token()}"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as api:
        scraped = await api.get("/metrics")
    assert scraped.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scraped.text)
        for sample in family.samples
    }


async def _health_of_workers(gateway: RunningGateway) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=gateway.api_url) as api:
        answered = await api.get("/health")
    assert answered.status_code == 200
    workers: dict[str, object] = answered.json()["components"]["workers"]
    return workers


def _served_by(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], worker: int) -> float:
    key = (
        "oauthproxy_requests_total",
        (("host", HOST), ("status_class", "2xx"), ("worker", str(worker))),
    )
    return samples.get(key, 0.0)


async def _get(port: int, target: str = "/ok") -> int:
    """One request on a new connection; its status."""
    wire = Wire(await trio.open_tcp_stream("127.0.0.1", port))
    try:
        await wire.send(request(f"GET {target} HTTP/1.1", "Connection: close", host=HOST))
        return (await response(wire)).status
    finally:
        await wire.stream.aclose()


async def _until_every_worker_served(gateway: RunningGateway, port: int) -> None:
    async def both() -> bool:
        statuses = [await _get(port) for _ in range(BATCH)]
        if statuses != [200] * BATCH:
            return False  # a worker that has not applied the new proxy yet answers 404
        samples = await _metrics(gateway)
        return all(_served_by(samples, worker) > 0 for worker in (0, 1))

    await eventually(both, what=f"both workers answering {HOST}", within=GUARD_SECONDS)


async def test_two_workers_serve_restart_and_drain(
    tmp_path: Path, nursery: trio.Nursery, storage: Storage, redis_url: str
) -> None:
    backend = HeldBackend()
    backend_port: int = await nursery.start(backend.serve)
    env = {**_environment(tmp_path / "data", redis_url), "WORKERS": "2"}
    port = int(env["HTTP_PORT"])
    async with started_gateway(tmp_path / "data", tmp_path, env) as gateway:
        parent = gateway.process.pid
        assert "workers        2 data-plane processes" in gateway.banner
        workers = _workers(parent)
        assert len(workers) == 2
        for name in ("HTTP_PORT", "HTTPS_PORT", "PROXY_PROTOCOL_PORT"):
            assert _listening(int(env[name])) == 2, name  # one socket per worker; the parent's
            # claim on the port never listens

        # a proxy created once the workers run reaches each of them through the workflow stream
        headers = {"Authorization": f"Bearer {gateway.admin_token()}"}
        async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as api:
            proxy = {"hostname": HOST, "target_url": f"http://127.0.0.1:{backend_port}"}
            assert (await api.post("/api/v1/proxy/targets/", json=proxy)).status_code == 201
        await _until_every_worker_served(gateway, port)
        assert await _health_of_workers(gateway) == {
            "status": "ok",
            "configured": 2,
            "running": 2,
            "restarts": 0,
        }

        # a worker killed outright is started again, and both serve again
        killed = min(workers)
        os.kill(killed, signal.SIGKILL)

        async def replaced() -> set[int] | None:
            now = _workers(parent)
            return now if len(now) == 2 and killed not in now else None

        workers = await eventually(replaced, what="the killed worker replaced", within=60)
        samples = await eventually(
            lambda: _restarted(gateway), what="a restart counted", within=GUARD_SECONDS
        )
        assert samples[("oauthproxy_workers_running", ())] == 2
        health = await _health_of_workers(gateway)
        assert (health["status"], health["running"], health["restarts"]) == ("ok", 2, 1)
        await _until_every_worker_served(gateway, port)

        # SIGTERM to the parent: every worker stops accepting, the slow request finishes
        slow = Wire(await trio.open_tcp_stream("127.0.0.1", port))
        with trio.fail_after(GUARD_SECONDS):
            await slow.send(request("GET /slow HTTP/1.1", host=HOST))
            await backend.received.wait()
        gateway.process.send_signal(signal.SIGTERM)

        async def refused() -> bool:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                return True
            await stream.aclose()
            return False

        await eventually(refused, what="no worker accepting", within=GUARD_SECONDS)
        assert gateway.process.returncode is None
        backend.release.set()
        with trio.fail_after(GUARD_SECONDS):
            answered = await response(slow)
            assert (answered.status, answered.body) == (200, b"slow done")
            assert await gateway.process.wait() == 0
        await slow.stream.aclose()
        assert not [pid for pid in workers if _alive(pid)]


async def test_workers_end_when_the_parent_is_killed(
    tmp_path: Path, storage: Storage, redis_url: str
) -> None:
    env = {**_environment(tmp_path / "data", redis_url), "WORKERS": "2"}
    async with started_gateway(tmp_path / "data", tmp_path, env) as gateway:
        workers = _workers(gateway.process.pid)
        assert len(workers) == 2
        gateway.process.kill()
        await gateway.process.wait()

        async def gone() -> bool:
            return not [pid for pid in workers if _alive(pid)]

        await eventually(gone, what="the workers of a killed parent gone", within=GUARD_SECONDS)


async def _restarted(
    gateway: RunningGateway,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
    samples = await _metrics(gateway)
    restarts = [
        value for (name, _), value in samples.items() if name == "oauthproxy_worker_restarts_total"
    ]
    return samples if sum(restarts) == 1 else None


async def test_a_bad_workers_setting_stops_start_up(tmp_path: Path) -> None:
    env = {**_environment(tmp_path / "data", "redis://127.0.0.1:1/0"), "WORKERS": "abc"}
    finished = await trio.run_process(
        [venv_bin("oauthproxy"), "run"],
        env=env,
        cwd=str(tmp_path),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert finished.returncode == 2
    assert b"WORKERS='abc'" in finished.stderr
    assert b"expected auto (one per CPU) or a number of processes" in finished.stderr


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("1", 1),
        (" 3 ", 3),
        ("auto", min(len(os.sched_getaffinity(0)), MAX_WORKERS)),
        ("AUTO", min(len(os.sched_getaffinity(0)), MAX_WORKERS)),
        (str(MAX_WORKERS), MAX_WORKERS),
    ],
)
def test_workers_setting(given: str, expected: int) -> None:
    assert load_settings(workers=given).workers == expected


@pytest.mark.parametrize("given", ["0", "-1", str(MAX_WORKERS + 1), "two", "1.5", ""])
def test_workers_setting_refused(given: str) -> None:
    with pytest.raises(SettingsError, match="WORKERS"):
        load_settings(workers=given)


def test_metrics_of_workers_join_the_parents_families() -> None:
    registry = CollectorRegistry()
    requests = Counter("oauthproxy_requests", "Requests", ["host"], registry=registry)
    requests.labels("a.example").inc(3)
    own = generate_latest(registry)
    requests.labels("a.example").inc(2)
    worker = generate_latest(registry).decode()

    merged = merged_exposition(own, lambda: [(0, worker), (1, worker)]).decode()

    assert merged.count("# HELP oauthproxy_requests_total ") == 1
    values = {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(merged)
        for sample in family.samples
        if sample.name == "oauthproxy_requests_total"
    }
    assert values == {
        (("host", "a.example"),): 3,
        (("host", "a.example"), ("worker", "0")): 5,
        (("host", "a.example"), ("worker", "1")): 5,
    }


async def test_reports_are_read_line_by_line_across_chunks() -> None:
    send, receive = trio.testing.memory_stream_one_way_pair()
    seen: list[dict[str, object]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_reports, receive, seen.append)
        await send.send_all(b'{"ready": 7}\nnot json\n["not", "a report"]\n{"metr')
        await send.send_all(b'ics": "x 1"}\n')
        await send.aclose()
    assert seen == [{"ready": 7}, {"metrics": "x 1"}]


async def test_a_worker_is_not_started_again_into_a_data_loss_hold(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """While Redis has lost its data, workers keep serving their last known configuration; a
    worker started again then had none (Redis no longer holds it), yet took its share of the
    public port's connections and answered them 404. Now it waits while another worker runs,
    and is started once the loss is accepted."""
    backend_port: int = await nursery.start(HeldBackend().serve)
    redis_port = free_port()
    env = {
        **_environment(tmp_path / "data", f"redis://127.0.0.1:{redis_port}/0"),
        "WORKERS": "2",
    }
    port = int(env["HTTP_PORT"])
    for directory in ("first", "second"):
        (tmp_path / directory).mkdir()
    async with (
        empty_redis(redis_port, tmp_path / "first") as first,
        started_gateway(tmp_path / "data", tmp_path, env) as gateway,
    ):
        parent = gateway.process.pid
        headers = {"Authorization": f"Bearer {gateway.admin_token()}"}
        async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as api:
            proxy = {"hostname": HOST, "target_url": f"http://127.0.0.1:{backend_port}"}
            assert (await api.post("/api/v1/proxy/targets/", json=proxy)).status_code == 201
        await _until_every_worker_served(gateway, port)
        first.kill()
        await first.wait()
        async with (
            empty_redis(redis_port, tmp_path / "second"),  # back on the same port, empty
            httpx.AsyncClient(base_url=gateway.api_url, timeout=30) as anonymous,
        ):
            await eventually(
                functools.partial(_has_problem, anonymous, "data_loss"),
                what="the data loss reported",
                within=GUARD_SECONDS,
            )
            killed = min(_workers(parent))
            os.kill(killed, signal.SIGKILL)
            await eventually(
                lambda: _restarted(gateway), what="the worker's end counted", within=GUARD_SECONDS
            )
            statuses: set[int] = set()
            with trio.move_on_after(5):  # (a worker started again is ready within ~2 s)
                while True:
                    statuses.add(await _get(port))
            assert statuses == {200}  # the configuration held, by the worker left
            assert len(_workers(parent)) == 1

            admin = {"Authorization": f"Bearer {gateway.admin_token()}"}
            accepted = await anonymous.post("/api/v1/redis/accept", headers=admin)
            assert accepted.status_code == 200, accepted.text

            async def both_run() -> bool:
                return len(_workers(parent)) == 2

            await eventually(both_run, what="the worker started after the accept", within=60)
