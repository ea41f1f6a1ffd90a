"""The proxy-bound part of `just bench` (`--only-proxy-bound` runs only this).

The backend is nginx `return 200` (one worker, a 6-byte body): it never limits a proxy. In front
of it, each proxy runs on one CPU (`taskset`) while wrk and the backend share the other:
  - the gateway: `oauthproxy run`, request log and metrics off, WORKERS=1;
  - nginx: one worker, `proxy_pass` to an `upstream { keepalive 64; }`;
  - haproxy: `nbthread 1`, `mode http`, `http-reuse always`;
  - Caddy: `GOMAXPROCS=1`, `reverse_proxy` (keep-alive to the backend by default).
Each is measured with `wrk -t1 -c50` for `--duration` seconds after a 1 s warm-up, the four
round-robin, `--rounds` times; each column is the median of its rounds. CPU per request is the
proxy's user + system time (its whole process tree, its embedded Redis excepted) over the wrk
run, ÷ the requests wrk completed: the number that holds on a shared machine.
The same gateway has a second proxy, `bench-auth.local`, with auth on: the row "gateway auth"
sends it a valid JWT on every request (`tls_auth.turn_auth_on`), round-robin with the others, so
"gateway auth ÷ gateway" is what checking a token costs the gateway itself. (The auth rows of
the throughput table measure the same thing unpinned and behind `benchmarks/backend.py`, whose
own CPU per request grows with the token and the identity headers it is sent: their req/s
ratio is mostly the backend's and the machine's.)
Then HTTP/2 and new TLS handshakes (`proxy_bound_tls.py`), and WORKERS=2 beside WORKERS=1.
Missing peers (haproxy, caddy, h2load) are skipped with a note; `just bench` installs them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway_child import (
    VENV_BIN,
    Gateway,
    GatewayPorts,
    api_call,
    create_proxy,
    launch_gateway,
    probe,
    wait_for_200,
)
from harness import (
    Processes,
    cpu_seconds,
    descendants,
    free_port,
    pinned,
    run_wrk,
    step,
    wait_for_port,
)
from nginx_child import nginx_binary, plain_server, start_nginx_with, tls_server, upstream
from proxy_bound_tls import measure_handshakes_rows, measure_http2
from proxy_rows import ProxyBound, ProxyRow, Round
from tls_auth import AUTH_HOST, ISSUER, SigningKey, fetch_certificate, turn_auth_on

HOST = "bench.local"
CERT_NAME = "bench-tls"
QUIET = {"REQUEST_LOG_ENABLED": "false", "METRICS_ENABLED": "false"}

BACKEND_LOCATION = '        location / { return 200 "hello\\n"; }\n'

HAPROXY_CONF = """\
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always
frontend bench
    bind 127.0.0.1:{port}
    default_backend backend
backend backend
    server nginx 127.0.0.1:{backend}
"""

CADDYFILE = """\
{{
    admin off
    auto_https off
}}
http://:{port} {{
    bind 127.0.0.1
    reverse_proxy 127.0.0.1:{backend}
}}
"""


@dataclass
class Contender:
    """One proxy under test: where wrk sends its requests and whose CPU is counted."""

    name: str
    setup: str
    measured: str
    port: int
    pids: Callable[[], list[int]]
    headers: tuple[str, ...] = (f"Host: {HOST}",)
    """What wrk sends besides its request line."""


def measure_proxy_bound(
    procs: Processes,
    args: argparse.Namespace,
    workdir: Path,
    token: str,
    failures: list[str],
    result: ProxyBound,
) -> None:
    """Fills `result` as it goes: what was measured stays when a later part fails."""
    cpus = sorted(os.sched_getaffinity(0))
    proxy_cpu, load_cpu = (cpus[0], cpus[1]) if len(cpus) > 1 else (None, None)
    layout = (
        f"each proxy on CPU {proxy_cpu}, wrk and the backend (nginx `return 200`) on CPU "
        f"{load_cpu}, of {os.cpu_count()} CPUs"
        if proxy_cpu is not None
        else "one CPU: nothing pinned, the proxy shares it with wrk and the backend"
    )
    result.layout = layout
    nginx = nginx_binary()
    if nginx is None:
        result.notes.append("proxy-bound: skipped, nginx (the backend) is not installed")
        return
    step(f"proxy-bound: {layout}")
    backend_port = free_port()
    start_nginx_with(
        procs,
        nginx,
        workdir / "nginx-backend",
        plain_server(backend_port, BACKEND_LOCATION),
        (backend_port,),
        load_cpu,
    )
    signing = SigningKey.new()
    gateway = launch_gateway(
        procs,
        workdir / "data-proxy-bound",
        GatewayPorts(),
        token,
        workdir / "gateway-proxy-bound.log",
        failures,
        QUIET
        | {"WORKERS": "1", "OAUTH_JWT_PRIVATE_KEY_B64": signing.env_value, "OAUTH_ISSUER": ISSUER},
        pinned_to=proxy_cpu,
    )
    with gateway.client() as api:
        api_call(
            api,
            "POST",
            "/api/v1/certificates/self-signed",
            {"cert_name": CERT_NAME, "domains": [HOST]},
        )
        create_proxy(api, HOST, backend_port)
        create_proxy(api, AUTH_HOST, backend_port)
    wait_for_200(gateway.ports.http, HOST)
    auth_headers = turn_auth_on(gateway, signing)
    tls = fetch_certificate(VENV_BIN / "oauthproxy", gateway.env, CERT_NAME, workdir / "tls-pb")
    contenders = [
        Contender(
            "gateway",
            "HTTP/1.1, request log and metrics off, WORKERS=1",
            "gateway",
            gateway.ports.http,
            gateway.serving_pids,
        ),
        Contender(
            "gateway auth",
            f"{AUTH_HOST}: auth on, a valid JWT per request",
            "gateway",
            gateway.ports.http,
            gateway.serving_pids,
            auth_headers,
        ),
    ]
    nginx_port, nginx_tls_port = free_port(), free_port()
    server = start_nginx_with(
        procs,
        nginx,
        workdir / "nginx-proxy",
        upstream(backend_port)
        + plain_server(nginx_port)
        + tls_server(nginx_tls_port, HOST, tls, http2=True),
        (nginx_port, nginx_tls_port),
        proxy_cpu,
    )
    nginx_tree = lambda: [server.pid, *descendants(server.pid)]  # noqa: E731
    contenders.append(
        Contender("nginx", "1 worker, keep-alive upstream", "master+worker", nginx_port, nginx_tree)
    )
    for peer in (start_haproxy, start_caddy):
        started = peer(procs, workdir, backend_port, proxy_cpu)
        if isinstance(started, str):
            result.notes.append(started)
            step(f"[yellow]{started}[/]")
        else:
            contenders.append(started)
    for number in range(1, args.rounds + 1):
        for contender in contenders:
            row = next((row for row in result.table if row.name == contender.name), None)
            if row is None:
                row = ProxyRow(contender.name, contender.setup, contender.measured)
                result.table.append(row)
            step(f"proxy-bound round {number}/{args.rounds}: {contender.name}")
            row.add(wrk_round(procs, args, contender, load_cpu))
    measure_http2(procs, args, result, gateway, nginx_tls_port, nginx_tree, load_cpu, HOST)
    measure_handshakes_rows(
        args, result, gateway, nginx_tls_port, nginx_tree, tls.chain, load_cpu, HOST
    )
    gateway.stop()
    measure_workers(procs, args, workdir, token, failures, backend_port, result)


def wrk_round(
    procs: Processes, args: argparse.Namespace, contender: Contender, cpu: int | None
) -> Round:
    url, host = f"http://127.0.0.1:{contender.port}/", contender.headers
    run_wrk(procs, url, 1, args.connections, host, cpu=cpu)
    watched = contender.pids()
    before = cpu_seconds(watched)
    done = run_wrk(procs, url, args.duration, args.connections, host, cpu=cpu)
    spent = cpu_seconds(watched) - before
    per_request = spent / done.requests * 1e6 if done.requests else float("nan")
    step(f"  {done.rps:,.0f} req/s, p99 {done.p99_ms:.2f} ms, {per_request:.0f} µs CPU/req")
    return Round(done.rps, done.p99_ms, per_request, done.requests, done.errors)


def _binary(name: str) -> str | None:
    found = shutil.which(name) or f"/usr/sbin/{name}"
    return found if os.access(found, os.X_OK) else None


def start_haproxy(
    procs: Processes, workdir: Path, backend_port: int, cpu: int | None
) -> Contender | str:
    binary = _binary("haproxy")
    if binary is None:
        return "haproxy: skipped, not installed (apt-get install haproxy)"
    port, conf = free_port(), workdir / "haproxy.cfg"
    conf.write_text(HAPROXY_CONF.format(port=port, backend=backend_port))
    with (workdir / "haproxy.log").open("w") as log:
        child = procs.start(
            [*pinned(cpu), binary, "-db", "-f", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    wait_for_port(port, child, f"haproxy (see {workdir}/haproxy.log)")
    return Contender(
        "haproxy", "nbthread 1, http-reuse always", "haproxy", port, lambda: [child.pid]
    )


def start_caddy(
    procs: Processes, workdir: Path, backend_port: int, cpu: int | None
) -> Contender | str:
    binary = _binary("caddy")
    if binary is None:
        return "caddy: skipped, not installed (apt-get install caddy)"
    port, home = free_port(), workdir / "caddy"
    home.mkdir()
    (home / "Caddyfile").write_text(CADDYFILE.format(port=port, backend=backend_port))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "GOMAXPROCS": "1"}
    env |= {"XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config")}
    argv = [binary, "run", "--config", str(home / "Caddyfile"), "--adapter", "caddyfile"]
    with (home / "caddy.log").open("w") as log:
        child = procs.start(
            [*pinned(cpu), *argv], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    wait_for_port(port, child, f"caddy (see {home}/caddy.log)")
    version = subprocess.run([binary, "version"], capture_output=True, text=True, check=False)
    setup = f"Caddy {version.stdout.split(' ')[0].strip()}, GOMAXPROCS=1, reverse_proxy"
    return Contender("caddy", setup, "caddy", port, lambda: [child.pid])


WORKER_WAIT = 10.0


def measure_workers(
    procs: Processes,
    args: argparse.Namespace,
    workdir: Path,
    token: str,
    failures: list[str],
    backend_port: int,
    result: ProxyBound,
) -> None:
    """WORKERS=2 beside WORKERS=1, nothing pinned, CPU of each gateway's process tree. Before
    the gateway has WORKERS, the WORKERS=2 gateway serves with one process: a note, no rows."""
    cores = os.cpu_count() or 1
    result.notes.append(
        f"WORKERS on {cores} CPUs: the gateway's processes share the cores with wrk and the "
        "backend, so the req/s ratio here says little about scaling (the target, ≥ 0.8·N, needs "
        "N cores free for the gateway beside the load generator); CPU per request should hold"
    )
    gateways: list[tuple[int, Gateway]] = []
    for workers in (2, 1):
        gateway = launch_gateway(
            procs,
            workdir / f"data-workers-{workers}",
            GatewayPorts(),
            token,
            workdir / f"gateway-workers-{workers}.log",
            failures,
            QUIET | {"WORKERS": str(workers)},
        )
        gateways.append((workers, gateway))
        with gateway.client() as api:
            create_proxy(api, HOST, backend_port)
        serving = wait_for_listeners(gateway, workers)
        if workers == 2 and serving < 2:
            note = (
                "WORKERS=2: not in effect, one process serves the port (a gateway without the "
                "WORKERS setting, or whose workers did not start): no WORKERS rows"
            )
            result.notes.append(note)
            step(f"[yellow]{note}[/]")
            gateway.stop()
            return
        all_answer(gateway.ports.http)
    try:
        contenders = [
            Contender(
                f"gateway WORKERS={workers}",
                f"{len(listening_pids(gateway))} serving process(es), nothing pinned",
                "the process tree",
                gateway.ports.http,
                gateway.serving_pids,
            )
            for workers, gateway in sorted(gateways, key=lambda pair: pair[0])
        ]
        rows = [ProxyRow(c.name, c.setup, c.measured, detail=c.setup) for c in contenders]
        result.workers += rows
        for number in range(1, args.rounds + 1):
            for contender, row in zip(contenders, rows, strict=True):
                step(f"WORKERS round {number}/{args.rounds}: {contender.name}")
                row.add(wrk_round(procs, args, contender, None))
    finally:
        for _, gateway in gateways:
            gateway.stop()


def listening_pids(gateway: Gateway) -> list[int]:
    """The processes of the gateway's tree that hold a listening socket on its HTTP port."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == gateway.ports.http:
                inodes.add(f"socket:[{fields[9]}]")
    holders = []
    for pid in gateway.serving_pids():
        try:
            links = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
        except OSError:
            continue
        if links & inodes:
            holders.append(pid)
    return holders


def wait_for_listeners(gateway: Gateway, wanted: int) -> int:
    """How many processes listen on the gateway's HTTP port, once `wanted` do or time is up."""
    deadline = time.perf_counter() + WORKER_WAIT
    while len(serving := listening_pids(gateway)) < wanted and time.perf_counter() < deadline:
        time.sleep(0.2)
    return len(serving)


def all_answer(port: int, probes: int = 40) -> None:
    """Every worker serves `HOST`: `probes` new connections in a row (the kernel spreads them
    over the SO_REUSEPORT sockets) answer 200."""
    deadline = time.perf_counter() + 60
    streak = 0
    while streak < probes:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{HOST} does not answer 200 on every worker after 60 s")
        streak = streak + 1 if probe(port, HOST) == 200 else 0
