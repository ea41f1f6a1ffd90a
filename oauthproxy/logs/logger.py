"""The request logger: a bounded buffer the data plane appends to, and the task that empties it.

`RequestLogger.record` is all the request path ever calls: a length check and a list append, no
await, no task, no channel. `serve_request_logger` looks at the buffer every `FLUSH_SECONDS` and
takes it once it holds `BATCH_ENTRIES`, or `BATCH_SECONDS` after the last batch, and writes the
batch in one script call (and, with ACCESS_LOG=json, as JSON lines on stdout, from a
worker thread so a slow reader of stdout never stalls the event loop). When Redis is slow or
away the batch is dropped and counted, never retried and never waited for by a request; the
next batch tries again, so logging resumes by itself when Redis is back.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from oauthproxy.logs import schema
from oauthproxy.logs.records import RequestEntry, event, fields_of
from oauthproxy.metrics import GatewayMetrics
from oauthproxy.settings import AccessLog, Settings
from oauthproxy.storage import Storage

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.1
"""How often the buffer is looked at (the specification's 100 ms window)."""
BATCH_ENTRIES = 1000
"""A batch is taken once the buffer holds this many entries (checked every `FLUSH_SECONDS`)...
Each batch costs Redis and the gateway a fixed part (about 0.35 and 0.5 ms of CPU, the script
call and its keys' upkeep), so a batch every 100 ms of a few hundred entries spent a third
more per entry than batches of 1,000."""
BATCH_SECONDS = 0.5
"""... or this long after the previous batch at the latest (a quiet gateway's entries wait at
most this long)."""

WRITE_TIMEOUT = 2.0
"""A batch Redis has not taken in this time is dropped (and counted)."""
MEMORY_CHECK_SECONDS = 5.0
"""How often Redis's memory use is asked for, when LOG_MAX_REDIS_MEMORY_MB caps it."""


_PLAIN = re.compile(r'[^\x00-\x20"\x7f-\U0010ffff]*')
"""A value written as it is in the text log: no space, quote, control character or non-ASCII."""


def _field(value: Any) -> str:
    """`value` for a `key=value` line: as it is when plain, else quoted with its control
    characters escaped (JSON). Values come from clients (a client id, a path): a raw newline
    started a line that read like the gateway's own, a space and `key=` a field of its own."""
    text = str(value)
    return text if _PLAIN.fullmatch(text) else json.dumps(text)


class RequestLogger:
    """The buffer between the data plane and the flush task, and its counters."""

    def __init__(
        self,
        *,
        capacity: int,
        to_redis: bool = True,
        access_log: bool = False,
        metrics: GatewayMetrics | None = None,
        max_redis_memory: int = 0,
    ):
        self.capacity = capacity
        self.max_redis_memory = max_redis_memory
        """Bytes of Redis memory above which batches are dropped, not written (0: no cap)."""
        self.over_memory = False
        """Redis used more than `max_redis_memory` when last asked."""
        self._memory_asked_at = -math.inf
        self.metrics = metrics
        """Counts every batch for `/metrics` (None: METRICS_ENABLED is off)."""
        if metrics is not None:
            metrics.logger = self
        self.to_redis = to_redis
        self.access_log = access_log
        self.dropped = 0
        """Entries never written to Redis: the buffer was full, Redis failed their batch, or Redis
        used more memory than `max_redis_memory`."""
        self.written = 0
        self.cpu_seconds = 0.0
        """CPU time this thread spent preparing batches (counting, planning, encoding): what
        logging costs the gateway besides building entries and sending the batch."""
        self.failing = False
        """The last batch failed (an outage is logged once, at its start and its end)."""
        self._buffer: list[RequestEntry] = []
        self._sequence = 0

    @classmethod
    def of(cls, settings: Settings) -> RequestLogger:
        return cls(
            capacity=settings.log_buffer_size,
            to_redis=settings.request_log_enabled,
            access_log=settings.access_log is AccessLog.JSON,
            metrics=GatewayMetrics() if settings.metrics_enabled else None,
            max_redis_memory=settings.log_max_redis_memory_mb * 1024 * 1024,
        )

    @property
    def active(self) -> bool:
        """Whether entries go anywhere at all (else the data plane need not build them)."""
        return self.to_redis or self.access_log or self.metrics is not None

    @property
    def shows_kind(self) -> bool:
        """Whether an entry's kind (http, websocket, sse) is written anywhere."""
        return self.to_redis or self.access_log

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def record(self, entry: RequestEntry) -> None:
        """Keep `entry` for the next batch; drop it (counted) when the buffer is full."""
        if len(self._buffer) < self.capacity:
            self._buffer.append(entry)
        else:
            self.dropped += 1

    def event(self, name: str, *, quiet: bool = False, **details: Any) -> None:
        """Log an event (see `records.event`) in the request log, and as an INFO line (a DEBUG
        line when `quiet`: what anyone can cause by the thousand, failed TLS handshakes)."""
        entry = event(name, **details)
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "%s%s",
            name,
            "".join(f" {key}={_field(value)}" for key, value in details.items() if value != ""),
        )
        if self.active:
            self.record(entry)

    def take(self) -> list[RequestEntry]:
        batch, self._buffer = self._buffer, []
        return batch

    async def flush(self, storage: Storage, settings: Settings) -> None:
        """Write what the buffer holds (one batch)."""
        batch = self.take()
        if not batch:
            return
        started = time.thread_time()
        if self.metrics is not None:
            self.metrics.count(batch)
        lines = [fields_of(entry) for entry in batch] if self.access_log else []
        to_redis = self.to_redis and not await self._over_memory(storage)
        if self.to_redis and not to_redis:
            self.dropped += len(batch)
        encoded = self._encoded(batch, settings) if to_redis else []
        self.cpu_seconds += time.thread_time() - started
        if lines:
            await trio.to_thread.run_sync(_write_lines, lines)
        if encoded:
            await self._write(storage, settings, encoded, len(batch))

    async def _over_memory(self, storage: Storage) -> bool:
        """Whether Redis uses more memory than the cap (asked every `MEMORY_CHECK_SECONDS`;
        when Redis does not answer, the write that follows finds out and counts the drop)."""
        now = trio.current_time()
        if not self.max_redis_memory or now - self._memory_asked_at < MEMORY_CHECK_SECONDS:
            return self.over_memory
        self._memory_asked_at = now
        used = None
        with trio.move_on_after(WRITE_TIMEOUT):
            try:
                used = await storage.request_logs.memory()
            except Exception:  # the batch's write reports Redis's failure
                return False
        if used is None:
            return self.over_memory
        over = used > self.max_redis_memory
        if over and not self.over_memory:
            log.warning(
                "request log: Redis uses %d MiB, over LOG_MAX_REDIS_MEMORY_MB=%d; dropping "
                "entries until it uses less (old ones expire after LOG_RETENTION_HOURS)",
                used >> 20,
                self.max_redis_memory >> 20,
            )
        elif self.over_memory and not over:
            log.info("request log: Redis uses %d MiB again; writing entries", used >> 20)
        self.over_memory = over
        return over

    def _encoded(self, batch: list[RequestEntry], settings: Settings) -> list[str]:
        plan = schema.plan(
            batch, first_sequence=self._sequence, slow_seconds=settings.log_slow_seconds
        )
        self._sequence = (self._sequence + len(batch)) % schema.SEQUENCES
        return schema.encoded(plan)

    async def _write(
        self, storage: Storage, settings: Settings, encoded: list[str], count: int
    ) -> None:
        retention = settings.log_retention_hours * 3600
        failure = ""
        try:
            with trio.move_on_after(WRITE_TIMEOUT) as waited:
                await storage.request_logs.write(
                    encoded,
                    retention=retention,
                    stream_maxlen=settings.log_stream_maxlen,
                    durable=settings.request_log_durable,
                )
            if waited.cancelled_caught:
                failure = f"Redis took more than {WRITE_TIMEOUT:g}s"
        except Exception as error:  # whatever Redis did, the gateway keeps serving
            failure = str(error) or type(error).__name__
        if failure:
            if not self.failing:
                log.warning("request log: dropping entries while Redis fails (%s)", failure)
            self.failing = True
            self.dropped += count
            return
        if self.failing:
            log.info("request log: writing again (%d entries dropped so far)", self.dropped)
            self.failing = False
        self.written += count


def _write_lines(lines: Sequence[dict[str, str]]) -> None:
    sys.stdout.write("".join(json.dumps(fields) + "\n" for fields in lines))
    sys.stdout.flush()


async def serve_request_logger(
    logger: RequestLogger,
    storage: Storage,
    settings: Settings,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Flush once the buffer holds `BATCH_ENTRIES`, or `BATCH_SECONDS` after the previous
    batch, until `stop` is set, then once more (the last entries)."""
    task_status.started()
    last = trio.current_time()
    while not stop.is_set():
        with trio.move_on_after(FLUSH_SECONDS):
            await stop.wait()
        now = trio.current_time()
        if logger.buffered >= BATCH_ENTRIES or now - last >= BATCH_SECONDS:
            last = now
            await logger.flush(storage, settings)
    await logger.flush(storage, settings)  # what arrived during the last flush


@asynccontextmanager
async def request_logging(settings: Settings, storage: Storage) -> AsyncIterator[RequestLogger]:
    """A running request logger for the block's lifetime: its last batch is written on exit,
    after everything inside the block (the data plane) has finished."""
    logger = RequestLogger.of(settings)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        if logger.active:
            await nursery.start(serve_request_logger, logger, storage, settings, stop)
        try:
            yield logger
        finally:
            stop.set()
