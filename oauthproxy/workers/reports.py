"""What a worker tells its parent, one JSON line at a time on a pipe of its own.

`{"ready": pid}` once its listeners accept and every proxy runs; then `{"metrics": text}`, its
Prometheus exposition, every `METRICS_REPORT_SECONDS` (the parent's `/metrics` shows them with a
`worker` label). The pipe is not the worker's stdout: access-log lines go there.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from oauthproxy.metrics import GatewayMetrics

log = logging.getLogger(__name__)

METRICS_REPORT_SECONDS = 1.0
MAX_REPORT_BYTES = 16 * 1024 * 1024
"""A longer line is not a report: the parent stops reading that worker's reports."""


class Reporter:
    """The worker's end of the pipe."""

    def __init__(self, fd: int) -> None:
        self._stream = trio.lowlevel.FdStream(fd)
        self._sending = trio.Lock()

    async def ready(self) -> None:
        await self._send({"ready": os.getpid()})

    async def serve_metrics(self, metrics: GatewayMetrics, shutdown: trio.Event) -> None:
        """Send the metrics every `METRICS_REPORT_SECONDS` until `shutdown` (a send the parent
        is not reading ends there too, so it never holds up the drain)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._report_metrics, metrics)
            await shutdown.wait()
            nursery.cancel_scope.cancel()

    async def _report_metrics(self, metrics: GatewayMetrics) -> None:
        while True:
            body, _content_type = metrics.exposition()
            try:
                await self._send({"metrics": body.decode()})
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                log.warning("the parent no longer reads this worker's reports")
                return
            await trio.sleep(METRICS_REPORT_SECONDS)

    async def _send(self, message: dict[str, object]) -> None:
        async with self._sending:
            await self._stream.send_all(json.dumps(message).encode() + b"\n")

    async def aclose(self) -> None:
        await self._stream.aclose()


async def read_reports(
    stream: trio.abc.ReceiveStream, on_report: Callable[[dict[str, object]], None]
) -> None:
    """The parent's end: hand each report to `on_report` until the worker closes the pipe (or
    exits)."""
    pending = b""
    while chunk := await stream.receive_some():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("a worker sent a report that is not JSON; ignored")
                continue
            if isinstance(message, dict):
                on_report(message)
        if len(pending) > MAX_REPORT_BYTES:
            log.warning("a worker's report is longer than %d bytes; no more read", MAX_REPORT_BYTES)
            return
