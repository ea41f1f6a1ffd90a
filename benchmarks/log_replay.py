"""Replay bench-like request-log batches into a Redis of its own and measure its CPU per entry.

`python benchmarks/log_replay.py [--batches 300] [--size 700]` starts the embedded valkey binary
(as the gateway runs it: `appendonly yes`), writes batches of entries like `just bench`'s (one
client, one hostname, 200s) through the gateway's own code (`RequestLogger` planning and encoding,
`RequestLogRepository.write`), and prints the server's CPU time (from /proc, so other load on the
machine does not count) and the gateway's encoding CPU, each per entry, and Redis memory per
million entries. Robust on a shared machine, unlike req/s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time

import coredis
import trio
from run import cpu_seconds, free_port

from oauthproxy.logs.logger import RequestLogger
from oauthproxy.logs.records import RequestEntry
from oauthproxy.settings import Settings
from oauthproxy.storage.embedded import server_binary
from oauthproxy.storage.request_logs import RequestLogRepository


def batch(size: int, start: float) -> list[RequestEntry]:
    made = []
    for number in range(size):
        entry = RequestEntry(
            start + number / 10_000, 0.0, "127.0.0.1", b"http", "bench.localhost", b"GET", b"/"
        )
        entry.status, entry.upstream, entry.version = 200, "http://127.0.0.1:38211", b"1.1"
        entry.bytes_in, entry.bytes_out, entry.duration = 58, 162, 0.0031
        made.append(entry)
    return made


async def replay(port: int, pid: int, batches: int, size: int) -> None:
    settings = Settings()  # type: ignore[call-arg]
    logger = RequestLogger(capacity=10 * size, metrics=None)
    redis: coredis.Redis[str] = coredis.Redis(port=port, db=1, decode_responses=True)
    async with redis:
        logs = RequestLogRepository(redis)
        memory = await logs.memory()
        encoding = 0.0
        server = cpu_seconds([pid])
        start = time.time() - batches * size / 10_000
        for number in range(batches):
            for entry in batch(size, start + number * size / 10_000):
                logger.record(entry)
            taken = logger.take()
            began = time.thread_time()
            encoded = logger._encoded(taken, settings)
            await logs.write(encoded, retention=86400, stream_maxlen=10_000)
            encoding += time.thread_time() - began
        server = cpu_seconds([pid]) - server
        grown = await logs.memory() - memory
    entries = batches * size
    print(
        f"{entries:,} entries in batches of {size}: "
        f"Redis {server / entries * 1e6:.2f} µs CPU/entry, "
        f"gateway encoding and sending {encoding / entries * 1e6:.2f} µs CPU/entry, Redis memory "
        f"{grown / entries * 1e6 / 2**20:.0f} MiB per million entries"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--size", type=int, default=700)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        argv = [str(server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--dir", data]
        server = subprocess.Popen(
            [*argv, "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL
        )
        try:
            time.sleep(0.3)
            trio.run(replay, port, server.pid, args.batches, args.size)
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    os.environ.setdefault("OAUTHPROXY_QUIET", "1")
    main()
