"""The parent's worker pool: one supervising task per worker process, under one nursery.

Each task starts its worker, waits for its `ready` report, keeps its latest metrics, and when
the worker exits starts it again after a backoff (0.1 s doubling to `RESTART_BACKOFF_LIMIT`,
back to 0.1 s once a worker has served `STEADY_SECONDS`), logging it and counting it in
`oauthproxy_worker_restarts`; while Redis has lost its data (a data-loss hold) only once no
other worker runs, as a new one would have no configuration to serve. A worker that exits
before it was ever ready stops the gateway's start-up instead: its settings or its ports are
wrong, and a restart would fail the same way. Shutdown is cancellation: leaving a task's
`open_child` sends its worker SIGTERM and waits for its drain (SHUTDOWN_GRACE_SECONDS, then a
margin, then SIGKILL).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from oauthproxy.data_plane import Plane
from oauthproxy.errors import StorageUnavailable, WorkerError
from oauthproxy.metrics import Served
from oauthproxy.retrying import Backoff
from oauthproxy.storage.child import ChildOptions, open_child
from oauthproxy.storage.replica_traces import ReplicaTraces
from oauthproxy.workers.leftovers import Sweeper, worker_name
from oauthproxy.workers.metrics import merged_exposition
from oauthproxy.workers.reports import read_reports

log = logging.getLogger(__name__)

WORKER_MODULE = "oauthproxy.workers.worker"
RESTART_BACKOFF_LIMIT = 5.0
STOP_MARGIN_SECONDS = 5.0
"""How much longer than SHUTDOWN_GRACE_SECONDS a stopping worker may take before SIGKILL."""
STEADY_SECONDS = 30.0
"""A worker that served this long before it died is started again after the shortest delay."""
CONTINUITY_CHECK_SECONDS = 1.0


@dataclass
class WorkerSlot:
    index: int
    pid: int | None = None
    """The running worker's pid; None while it is being started again."""
    restarts: int = 0
    metrics: str = ""
    """Its latest Prometheus exposition."""


async def start_workers(plane: Plane) -> Mapping[str, Served]:
    """Start `WORKERS` worker processes in `plane.services`; return once every one is ready.
    The parent serves no proxy itself: its instance table is empty."""
    pool = WorkerPool(plane)
    await plane.services.start(pool.serve)
    plane.services.start_soon(_check_continuity, plane)
    plane.condition.workers = pool
    metrics = plane.requests.metrics
    if metrics is not None:
        metrics.registry.register(WorkerGauges(pool.slots))
        metrics.merge = functools.partial(merged_exposition, workers=pool.expositions)
    return {}


class WorkerPool:
    def __init__(self, plane: Plane) -> None:
        self._plane = plane
        self.slots = [WorkerSlot(index) for index in range(plane.settings.workers)]
        self._sweeper = Sweeper(
            ReplicaTraces(plane.storage.redis), plane.replica, plane.settings.workers
        )

    def counts(self) -> dict[str, int]:
        """How many are asked for, how many run, and how often one was started again."""
        return {
            "configured": len(self.slots),
            "running": sum(slot.pid is not None for slot in self.slots),
            "restarts": sum(slot.restarts for slot in self.slots),
        }

    def expositions(self) -> list[tuple[int, str]]:
        return [(slot.index, slot.metrics) for slot in self.slots if slot.metrics]

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every worker until `shutdown`; started once each has reported ready."""
        async with trio.open_nursery() as workers:
            async with trio.open_nursery() as starting:  # all at once; each ready, or a failure
                for slot in self.slots:
                    starting.start_soon(workers.start, self._supervise, slot)
            log.info("%d workers serve the public ports", len(self.slots))
            workers.start_soon(self._sweeper.run)  # what workers of an earlier run left
            task_status.started()
            await self._plane.shutdown.wait()
            workers.cancel_scope.cancel()

    async def _supervise(
        self, slot: WorkerSlot, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        backoff = Backoff(first=0.1, limit=RESTART_BACKOFF_LIMIT)
        started = False
        ready_at = math.inf

        def ready() -> None:
            nonlocal started, ready_at
            ready_at = trio.current_time()
            if started:
                log.warning("worker %d is back (pid %s)", slot.index, slot.pid)
                self._sweeper.poke()
            else:
                started = True
                task_status.started()

        while True:
            ready_at = math.inf  # until this run reports ready
            code = await self._run(slot, ready)
            slot.pid = None
            slot.metrics = ""  # its counters died with it; the next worker counts from 0
            if not started:
                raise WorkerError(
                    f"worker {slot.index} exited (code {code}) before it was ready; "
                    "its log lines above say why"
                )
            slot.restarts += 1
            if trio.current_time() - ready_at >= STEADY_SECONDS:
                backoff.reset()  # it served a while: not a worker that dies as soon as it starts
            log.error(
                "worker %d exited (code %s); starting it again in %.1f s",
                slot.index,
                code,
                backoff.next_delay,
            )
            await backoff.wait()
            await self._while_held(slot)

    async def _while_held(self, slot: WorkerSlot) -> None:
        """While Redis has lost its data, a worker started again would serve nothing (what the
        others serve is their last known configuration, which Redis no longer holds) and would
        still take its share of the public ports' connections: it waits, and the others serve
        them all, until the loss is accepted, or until no other worker runs."""
        continuity = self._plane.continuity
        if not (continuity.lost and self._others_run(slot)):
            return
        log.warning(
            "worker %d is not started again while Redis has lost its data: the other workers "
            "serve its connections with their last known configuration",
            slot.index,
        )
        # (the loss is a state of Redis, polled by `_check_continuity`: nothing to wait on)
        while continuity.lost and self._others_run(slot):  # noqa: ASYNC110
            await trio.sleep(CONTINUITY_CHECK_SECONDS)
        log.warning("worker %d is started again", slot.index)

    def _others_run(self, slot: WorkerSlot) -> bool:
        return any(other.pid is not None for other in self.slots if other is not slot)

    async def _run(self, slot: WorkerSlot, ready: Callable[[], None]) -> int:
        """Run one worker process until it exits; its exit code."""
        settings = self._plane.settings
        read_end, write_end = os.pipe()
        options = ChildOptions(
            environment=self._environment(slot.index),
            inherit_output=True,
            pass_fds=(write_end,),
            stop_grace=settings.shutdown_grace_seconds + STOP_MARGIN_SECONDS,
        )
        argv = [sys.executable, "-m", WORKER_MODULE, str(slot.index), self._plane.api_url]
        try:
            async with (
                trio.lowlevel.FdStream(read_end) as pipe,
                open_child([*argv, str(write_end)], options) as child,
            ):
                os.close(write_end)  # the worker holds the only writer: its exit ends the pipe
                write_end = -1
                slot.pid = child.pid

                def report(message: dict[str, object]) -> None:
                    if "ready" in message:
                        ready()
                    elif isinstance(text := message.get("metrics"), str):
                        slot.metrics = text

                async with trio.open_nursery() as watch:
                    watch.start_soon(read_reports, pipe, report)
                    code = await child.wait()
                    watch.cancel_scope.cancel()
                return code
        finally:
            if write_end >= 0:
                os.close(write_end)

    def _environment(self, index: int) -> dict[str, str]:
        """The parent's environment with what the parent decided: the Redis (the embedded one's
        URL), the ports as bound (a 0 resolved), and the worker's own consumer group name."""
        plane = self._plane
        return {
            **os.environ,
            "REDIS_URL": plane.redis_url,
            "HTTP_PORT": str(plane.ports.http),
            "HTTPS_PORT": str(plane.ports.https),
            "PROXY_PROTOCOL_PORT": str(plane.ports.proxy_protocol),
            "GATEWAY_ID": worker_name(plane.replica, index),
        }


async def _check_continuity(plane: Plane) -> None:
    """The data-loss check the parent's `/health` reports (each worker checks for itself too,
    as the workflow consumer of a single process does); ends at shutdown."""
    while not plane.shutdown.is_set():
        with trio.move_on_after(CONTINUITY_CHECK_SECONDS):
            await plane.shutdown.wait()
            return
        try:
            await plane.continuity.check()
        except StorageUnavailable as error:
            log.debug("data-loss check: %s", error)


class WorkerGauges(Collector):
    """The pool as `/metrics` shows it."""

    def __init__(self, slots: list[WorkerSlot]) -> None:
        self._slots = slots

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily(
            "oauthproxy_workers_running",
            "Data-plane worker processes running (WORKERS)",
            value=sum(slot.pid is not None for slot in self._slots),
        )
        restarts = CounterMetricFamily(
            "oauthproxy_worker_restarts",
            "Times a data-plane worker process died and was started again",
            labels=["worker"],
        )
        for slot in self._slots:
            restarts.add_metric([str(slot.index)], slot.restarts)
        yield restarts
