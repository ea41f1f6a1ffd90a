"""The gateway's CPU time per proxied request and per TLS handshake, alone and repeatable.

    python benchmarks/cpu_per_request.py [--seconds 5] [--rounds 3] [--connections 50]
        [--tls] [--floor] [--baseline OTHER_CHECKOUT] [--env NAME=VALUE ...]

The proxy-bound case of issue 14: nginx `return 200` (one worker) is the backend, so the gateway
is the bottleneck; wrk -t1 -cN sends small keep-alive requests through one proxy of the gateway.
The number that matters is the gateway's CPU time (user + system, all its threads, from
/proc/PID/stat) divided by the requests wrk counted — robust on a shared machine, where wall
clock and req/s move with other load. Each round is a 1 s warm-up and then the measured run;
the median of the rounds is printed. Even CPU time per request moves with the machine's load (a
busier machine batches more events per wakeup), so to compare two versions, give the other one
with `--baseline` (a checkout with its own .venv, e.g. a `git worktree` of main): the two
gateways are measured in turn, round by round, under the same load (`--variant NAME=VALUE`
adds one more gateway of this checkout with other settings, e.g. REQUEST_LOG_ENABLED=false,
measured the same way). `--floor` adds
`benchmarks/trio_floor.py`, the least a Trio proxy can do for the same traffic.

With `--tls`, also the gateway's CPU per new TLS handshake (full handshakes: a new session every
time) and per resumed one (each connection offers the session of the previous one), measured
by client threads of `tls_auth` against a self-signed certificate the gateway makes, and the
same against nginx serving that certificate and key, for comparison. Both proxy the `GET /` to
the same backend and negotiate the same TLS (1.3, X25519, TLS_AES_256_GCM_SHA384, one session
ticket per handshake): benchmarks/README.md ("New TLS connections") lists what was checked
and the two small differences (the gateway's request log; nginx's close_notify).

With `--auth`, each gateway also gets the `just bench` auth rows' proxy, `bench-auth.local` with
auth on (`auth_required_users: ["*"]`), and a round per gateway measures it too, with wrk
sending a JWT signed with the gateway's key (as `benchmarks/run.py` does): the gateway's CPU per
authenticated request beside its CPU per unauthenticated one, proxy-bound (the backend is
nginx), so the difference is what auth costs the gateway. `--python-backend` puts
`benchmarks/backend.py` (the backend of `just bench`'s throughput rows) behind the gateways
instead, for the same comparison as `just bench` makes.
"""

from __future__ import annotations

import argparse
import math
import re
import secrets
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway_child import (
    VENV_BIN,
    Gateway,
    GatewayPorts,
    api_call,
    create_proxy,
    launch_gateway,
    wait_for_200,
)
from harness import (
    Processes,
    children_of,
    cpu_seconds,
    free_port,
    run_wrk,
    step,
    wait_for_port,
)
from nginx_child import nginx_binary, plain_server, start_nginx_with
from run import BENCH_HOST, CERT_NAME, ROOT, start_backend, start_nginx, valkey_pid
from tls_auth import (
    AUTH_HOST,
    ISSUER,
    SNI_LUA,
    SigningKey,
    client_context,
    fetch_certificate,
    https_get,
    turn_auth_on,
    wait_for_https,
)

BACKEND_LOCATION = '        location / { return 200 "ok\\n"; }\n'


def start_fast_backend(procs: Processes, binary: str, prefix: Path) -> int:
    """nginx answering `200 ok` to everything, one worker: a backend far faster than the gateway."""
    port = free_port()
    start_nginx_with(procs, binary, prefix, plain_server(port, BACKEND_LOCATION), (port,))
    return port


@dataclass
class Target:
    """A server measured in turn with the others: its name, port and whose CPU counts."""

    name: str
    port: int
    pids: Callable[[], list[int]]
    values: list[float] = field(default_factory=list)
    sni_script: Path | None = None
    """Set: keep-alive over HTTPS (wrk sends SNI bench.local, connecting to 127.0.0.1)."""
    redis: list[int] = field(default_factory=list)
    """The gateway's embedded Redis (its CPU per request is shown too: the request log's)."""
    redis_values: list[float] = field(default_factory=list)
    headers: tuple[str, ...] = (f"Host: {BENCH_HOST}",)
    """What wrk sends besides its request line (the `--auth` rows: `bench-auth.local` and a JWT)."""


H2LOAD_DONE = re.compile(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded")


def run_h2load(procs: Processes, port: int, seconds: int, connections: int) -> int:
    """h2load over TLS (ALPN h2) to `BENCH_HOST` on 127.0.0.1:`port`, 10 streams at once per
    connection: the requests that succeeded."""
    argv = ["h2load", f"-D{seconds}", f"-c{connections}", "-m10"]
    argv += [f"--connect-to=127.0.0.1:{port}", f"https://{BENCH_HOST}:{port}/"]
    child = procs.start(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = child.communicate(timeout=seconds + 60)
    found = H2LOAD_DONE.search(output)
    if child.returncode != 0 or found is None:
        raise RuntimeError(f"h2load failed (code {child.returncode}):\n{output}")
    return int(found.group(1))


def h2_round(procs: Processes, target: Target, args: argparse.Namespace, number: int) -> None:
    """A 1 s warm-up, then `args.seconds` of h2load: the target's CPU µs per HTTP/2 request."""
    connections = max(1, args.connections // 10)  # 10 streams each: as many in flight as wrk
    run_h2load(procs, target.port, 1, connections)
    watched = target.pids()
    before = cpu_seconds(watched)
    done = run_h2load(procs, target.port, args.seconds, connections)
    per_request = (cpu_seconds(watched) - before) / done * 1e6
    target.values.append(per_request)
    step(f"  {target.name} round {number}: {done:,} HTTP/2 requests, {per_request:.1f} µs CPU each")


def one_round(procs: Processes, target: Target, args: argparse.Namespace, number: int) -> None:
    """A 1 s warm-up, then `args.seconds` of wrk: the target's CPU µs per request."""
    if args.h2:
        h2_round(procs, target, args, number)
        return
    url, host = f"http://127.0.0.1:{target.port}/", target.headers
    script = target.sni_script
    if script is not None:
        url = f"https://{BENCH_HOST}:{target.port}/"
    if args.new_connections:
        host += ("Connection: close",)
    run_wrk(procs, url, 1, args.connections, host, script)
    watched = target.pids()
    before, redis_before = cpu_seconds(watched), cpu_seconds(target.redis)
    result = run_wrk(procs, url, args.seconds, args.connections, host, script)
    used, redis_used = cpu_seconds(watched) - before, cpu_seconds(target.redis) - redis_before
    if result.errors:
        step(f"[yellow]{target.name} round {number}: errors {result.error_text()}[/]")
    per_request = used / result.requests * 1e6
    target.values.append(per_request)
    redis = ""
    if target.redis:
        target.redis_values.append(redis_used / result.requests * 1e6)
        redis = f" (its Redis {target.redis_values[-1]:.1f})"
    step(
        f"  {target.name} round {number}: {result.requests:,} requests, "
        f"{result.rps:,.0f} req/s, {per_request:.1f} µs CPU/request{redis}"
    )


def start_floor(procs: Processes, backend_port: int) -> Target:
    port = free_port()
    script = Path(__file__).parent / "trio_floor.py"
    floor = procs.start([sys.executable, str(script), str(port), str(backend_port)])
    wait_for_port(port, floor, "benchmarks/trio_floor.py")
    return Target("Trio floor", port, lambda: [floor.pid])


# --- TLS handshakes ----------------------------------------------------------------------------


def _resuming_get(
    context: ssl.SSLContext, port: int, session: ssl.SSLSession | None
) -> tuple[ssl.SSLSession | None, bool]:
    """`GET /` on a new connection offering `session`: (the session to offer next, reused?)."""
    request = f"GET / HTTP/1.1\r\nHost: {BENCH_HOST}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with context.wrap_socket(raw, server_hostname=BENCH_HOST, session=session) as tls:
            tls.sendall(request)
            while tls.recv(65536):
                pass
            return tls.session, tls.session_reused


def handshake_cpu(
    port: int, ca_file: Path, pids: Callable[[], list[int]], seconds: float, resume: bool
) -> tuple[float, int, int]:
    """(server CPU µs per connection, connections, of them resumed) over `seconds`, 4 threads."""
    context = client_context(ca_file)
    deadline = time.perf_counter() + seconds
    counts = {"done": 0, "reused": 0}
    lock = threading.Lock()

    def client() -> None:
        session: ssl.SSLSession | None = None
        done = reused = 0
        while time.perf_counter() < deadline:
            if resume:
                session, was_reused = _resuming_get(context, port, session)
                reused += was_reused
            else:
                https_get(context, port, BENCH_HOST)
            done += 1
        with lock:
            counts["done"] += done
            counts["reused"] += reused

    watched = pids()
    before = cpu_seconds(watched)
    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    used = cpu_seconds(watched) - before
    done = counts["done"]
    return (used / done * 1e6 if done else math.nan), done, counts["reused"]


def measure_tls(
    procs: Processes,
    args: argparse.Namespace,
    workdir: Path,
    gateways: list[tuple[str, Gateway]],
    backend_port: int,
) -> None:
    """Full and resumed handshakes (each with a `GET /`) against every gateway and nginx, in
    turn. Each gateway serves the self-signed certificate it made (`--env` sets the key type
    of both: CERTIFICATE_KEY_TYPE); nginx serves the first one's certificate and key."""
    targets: list[tuple[Target, Path]] = []
    certificates = []
    for name, gateway in gateways:
        files = fetch_certificate(
            gateway.binary, gateway.env, CERT_NAME, workdir / f"tls-{gateway.pid}"
        )
        certificates.append(files)
        wait_for_https(client_context(files.chain), gateway.ports.https, BENCH_HOST)
        targets.append((Target(name, gateway.ports.https, _pids_of(gateway)), files.chain))
    nginx = nginx_binary()
    if nginx is not None:
        files = certificates[0]
        server, _, tls_port = start_nginx(procs, nginx, workdir / "nginx-tls", backend_port, files)
        wait_for_https(client_context(files.chain), tls_port, BENCH_HOST)
        pids = lambda: [server.pid, *children_of(server.pid)]  # noqa: E731
        targets.append((Target("nginx", tls_port, pids), files.chain))
    for resume in (False, True):
        kind = "resumed" if resume else "full"
        for target, chain in targets:
            target.values = []
            handshake_cpu(target.port, chain, target.pids, 1, resume)  # warm-up
        for _ in range(args.rounds):
            for target, chain in targets:
                cpu, done, reused = handshake_cpu(
                    target.port, chain, target.pids, args.seconds, resume
                )
                target.values.append(cpu)
                step(
                    f"  {target.name} {kind}: {done:,} connections ({reused:,} resumed), "
                    f"{cpu:.0f} µs CPU/connection"
                )
        for target, _ in targets:
            median = statistics.median(target.values)
            step(f"[bold]{target.name} {kind} handshake + GET: median {median:.0f} µs CPU[/]")


def _interpreter(checkout: Path) -> str:
    """Which Python a checkout's .venv runs (its pyvenv.cfg's home and version)."""
    config = (checkout / ".venv" / "pyvenv.cfg").read_text()
    fields = dict(line.split(" = ", 1) for line in config.splitlines() if " = " in line)
    return f"{fields.get('version_info', '?')} from {fields.get('home', '?')}"


def _same_python(ours: Path, baseline: Path) -> None:
    """Stop unless both checkouts run the same interpreter: a source-built Python (pyenv's,
    what a bare `uv sync` may pick) ran the same gateway ~15 % slower than Debian's, more than
    any change this compares (`scripts/sync-env` picks the system's; `./scripts/just --version`
    in the other checkout makes its .venv that way)."""
    mine, theirs = _interpreter(ours), _interpreter(baseline)
    if mine != theirs:
        sys.exit(
            f"the baseline's .venv runs Python {theirs}, this one's {mine}: the comparison would "
            "measure the interpreters (make the baseline's with `./scripts/just --version`)"
        )


def _pids_of(gateway: Gateway) -> Callable[[], list[int]]:
    return lambda: [gateway.pid]


def start_gateway(
    procs: Processes,
    workdir: Path,
    name: str,
    checkout: Path,
    backend_port: int,
    args: argparse.Namespace,
    failures: list[str],
    more_env: tuple[str, ...] = (),
) -> Gateway:
    """`oauthproxy run` from `checkout`'s .venv, with one proxy to the backend (and a
    self-signed certificate for it with `--tls`)."""
    import gateway_child

    extra = dict(pair.split("=", 1) for pair in (*args.env, *more_env))
    slug = re.sub(r"\W+", "-", name)
    gateway_child.VENV_BIN = checkout / ".venv" / "bin"  # `Gateway` starts the `oauthproxy` there
    try:
        gateway = launch_gateway(
            procs,
            workdir / f"data-{slug}",
            GatewayPorts(),
            secrets.token_urlsafe(32),
            workdir / f"gateway-{slug}.log",
            failures,
            extra,
        )
    finally:
        gateway_child.VENV_BIN = VENV_BIN
    gateway.binary = checkout / ".venv" / "bin" / "oauthproxy"  # type: ignore[attr-defined]
    with gateway.client() as api:
        if args.tls or args.https:
            api_call(
                api,
                "POST",
                "/api/v1/certificates/self-signed",
                {"cert_name": CERT_NAME, "domains": [BENCH_HOST]},
            )
        create_proxy(api, BENCH_HOST, backend_port)
    wait_for_200(gateway.ports.http, BENCH_HOST)
    step(f"{name}: pid {gateway.pid}, {checkout}")
    return gateway


def protect(gateway: Gateway, signing: SigningKey, backend_port: int) -> tuple[str, ...]:
    """`AUTH_HOST` on `gateway`, auth on: the headers wrk sends it (`tls_auth.turn_auth_on`)."""
    with gateway.client() as api:
        create_proxy(api, AUTH_HOST, backend_port)
    return turn_auth_on(gateway, signing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--tls", action="store_true", help="also measure TLS handshakes")
    parser.add_argument("--no-http", action="store_true", help="skip the keep-alive rounds")
    parser.add_argument(
        "--https", action="store_true", help="the keep-alive rounds over HTTPS (no floor)"
    )
    parser.add_argument(
        "--h2", action="store_true", help="the rounds over HTTP/2 with h2load (implies --https)"
    )
    parser.add_argument(
        "--new-connections",
        action="store_true",
        help="a new connection per request (wrk sends Connection: close)",
    )
    parser.add_argument(
        "--floor", action="store_true", help="also measure benchmarks/trio_floor.py"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (with its .venv) whose gateway is measured in turn with this one",
    )
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the gateways")
    parser.add_argument(
        "--auth", action="store_true", help="also measure an auth-enabled proxy with a valid JWT"
    )
    parser.add_argument(
        "--python-backend",
        action="store_true",
        help="benchmarks/backend.py behind the gateways (as in just bench) instead of nginx",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=VALUE: one more gateway of this checkout, with these settings, in turn",
    )
    args = parser.parse_args()
    args.https = args.https or args.h2
    if args.auth and (args.https or args.no_http):
        sys.exit("--auth measures plain-HTTP keep-alive rounds: no --https, --h2 or --no-http")
    signing = SigningKey.new() if args.auth else None
    if signing is not None:
        args.env += [f"OAUTH_JWT_PRIVATE_KEY_B64={signing.env_value}", f"OAUTH_ISSUER={ISSUER}"]
    nginx = nginx_binary()
    if nginx is None:
        sys.exit("nginx is needed for the backend (apt-get install nginx)")
    procs = Processes()
    failures: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="cpu-per-request-") as temp:
            workdir = Path(temp)
            if args.python_backend:
                backend_port = start_backend(procs)[1]
            else:
                backend_port = start_fast_backend(procs, nginx, workdir / "backend")
            checkouts: list[tuple[str, Path, tuple[str, ...]]] = [("gateway", ROOT, ())]
            if args.baseline is not None:
                _same_python(ROOT, args.baseline.resolve())
                checkouts.append(("baseline", args.baseline.resolve(), ()))
            if args.variant:
                checkouts.append((" ".join(args.variant), ROOT, tuple(args.variant)))
            gateways = [
                (name, start_gateway(procs, workdir, name, path, backend_port, args, failures, env))
                for name, path, env in checkouts
            ]
            if not args.no_http:
                sni_script = None
                if args.https:
                    sni_script = workdir / "sni.lua"
                    sni_script.write_text(SNI_LUA)
                    for _, gateway in gateways:
                        files = fetch_certificate(
                            gateway.binary, gateway.env, CERT_NAME, workdir / f"tls-{gateway.pid}"
                        )
                        wait_for_https(client_context(files.chain), gateway.ports.https, BENCH_HOST)
                port_of = (lambda g: g.ports.https) if args.https else (lambda g: g.ports.http)
                targets = [
                    Target(name, port_of(gateway), _pids_of(gateway), sni_script=sni_script,
                           redis=[pid] if (pid := valkey_pid(gateway.data_dir)) else [])
                    for name, gateway in gateways
                ]  # fmt: skip
                if signing is not None:
                    targets += [
                        Target(f"{name} auth", gateway.ports.http, _pids_of(gateway),
                               headers=protect(gateway, signing, backend_port))
                        for name, gateway in gateways
                    ]  # fmt: skip
                if args.floor and not args.https:
                    targets.append(start_floor(procs, backend_port))
                tool = "h2load -m10" if args.h2 else "wrk -t1"
                step(f"{tool} -c{args.connections} -d{args.seconds}s, rounds taken in turn")
                for number in range(1, args.rounds + 1):
                    for target in targets:
                        one_round(procs, target, args, number)
                for target in targets:
                    median = statistics.median(target.values)
                    redis = (
                        f" (its Redis {statistics.median(target.redis_values):.1f})"
                        if target.redis_values
                        else ""
                    )
                    step(f"[bold]{target.name}: median {median:.1f} µs CPU/request{redis}[/]")
            if args.tls:
                measure_tls(procs, args, workdir, gateways, backend_port)
            for _, gateway in gateways:
                gateway.stop()
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
