"""The data-plane benchmark: `just bench` (or `python benchmarks/run.py [--quick]`).

One run measures, against the keep-alive backend in `benchmarks/backend.py`:
  1. the backend directly with wrk;
  2. the same wrk through the gateway (`oauthproxy run`, embedded Redis, a temporary data dir),
     with the gateway's CPU time per proxied request;
  3. the same wrk through nginx as a reverse proxy, when nginx is installed;
  4. HTTPS keep-alive through the gateway and through nginx (the same certificate and key), and
     new TLS handshakes per second against both (see `benchmarks/tls_auth.py`);
  5. an auth-enabled proxy: wrk with a valid JWT, beside the same proxy before auth was enabled;
  6. a 1 GiB download and a 1 GiB upload through the gateway, sampling the gateway's RSS;
  7. the time from `POST /api/v1/proxy/targets/` to the first 200 through the gateway;
  8. 1,000 hostnames: RSS, restart (start-up to the ready banner) and time until they all answer.

It prints numbers and asserts nothing. Results go to `analysis/bench-<timestamp>.json` and `.md`;
a run that completes also writes `benchmarks/results.json` (or `--results PATH`), which
`benchmarks/plot.py` draws into docs/benchmarks.png.
Every process it starts is stopped before it exits, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from gateway_child import (
    Gateway,
    GatewayPorts,
    api_call,
    create_proxy,
    launch_gateway,
    stop_leftover_valkey,
    wait_for_200,
)
from harness import (
    MIB,
    Processes,
    RssSampler,
    WrkResult,
    children_of,
    console,
    cpu_seconds,
    free_port,
    rss_mib,
    run_wrk,
    step,
    wait_for_port,
)
from nginx_child import nginx_binary, plain_server, start_nginx_with, tls_server, upstream
from proxy_bound import measure_proxy_bound
from proxy_rows import ProxyBound, tables
from proxy_rows import lines as proxy_bound_lines
from rich import box
from rich.console import Console
from rich.table import Table
from tls_auth import (
    AUTH_HOST,
    HANDSHAKE_CLIENTS,
    ISSUER,
    SNI_LUA,
    CertificateFiles,
    Handshakes,
    SigningKey,
    client_context,
    fetch_certificate,
    measure_handshakes,
    turn_auth_on,
    wait_for_https,
)

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
ANALYSIS = ROOT / "analysis"
LATEST_RESULTS = ROOT / "benchmarks" / "results.json"
GIB = 1024 * MIB
BENCH_HOST = "bench.local"
CERT_NAME = "bench-tls"
STREAM_CHUNK = 256 * 1024
SAMPLED_HOSTS = 50


@dataclass
class Throughput:
    name: str
    measured: str
    """Whose CPU time `cpu_us_per_request` is."""
    wrk: WrkResult
    cpu_us_per_request: float
    ratio: float = math.nan
    """req/s ÷ the direct row's req/s."""


def measure_throughput(
    procs: Processes,
    name: str,
    url: str,
    pids: Callable[[], list[int]],
    measured: str,
    args: argparse.Namespace,
    headers: tuple[str, ...] = (),
    script: Path | None = None,
) -> Throughput:
    step(f"wrk {name}: 1 s warm-up, then {args.duration} s at {args.connections} connections")
    run_wrk(procs, url, 1, args.connections, headers, script)
    watched = pids()
    cpu_before = cpu_seconds(watched)
    result = run_wrk(procs, url, args.duration, args.connections, headers, script)
    cpu = cpu_seconds(watched) - cpu_before
    per_request = cpu / result.requests * 1e6 if result.requests else math.nan
    step(
        f"  {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
        f"{per_request:.0f} µs CPU/req ({measured}), errors: {result.error_text()}"
    )
    return Throughput(name, measured, result, per_request)


# --- the backend, the gateway, nginx -----------------------------------------------------------


def start_backend(procs: Processes) -> tuple[subprocess.Popen[Any], int]:
    port = free_port()
    child = procs.start(
        [sys.executable, str(ROOT / "benchmarks" / "backend.py"), str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    wait_for_port(port, child, "the benchmark backend")
    return child, port


def start_nginx(
    procs: Processes,
    binary: str,
    prefix: Path,
    backend_port: int,
    tls: CertificateFiles | None = None,
) -> tuple[subprocess.Popen[Any], int, int]:
    """nginx with a plain HTTP server and, given `tls`, an HTTPS one: (process, port, tls port)."""
    port, tls_port = free_port(), free_port()
    http = upstream(backend_port) + plain_server(port)
    if tls is not None:
        http += tls_server(tls_port, BENCH_HOST, tls)
    ports = (port, tls_port) if tls is not None else (port,)
    return start_nginx_with(procs, binary, prefix, http, ports), port, tls_port


# --- streaming, create → 200, many hostnames ---------------------------------------------------


@dataclass
class Transfer:
    direction: str
    bytes: int
    seconds: float
    mib_per_s: float
    rss_before_mib: float | None = None
    rss_peak_mib: float | None = None
    rss_growth_mib: float | None = None


def upload_body(size: int) -> Iterator[bytes]:
    chunk = bytes(STREAM_CHUNK)
    whole, rest = divmod(size, STREAM_CHUNK)
    for _ in range(whole):
        yield chunk
    if rest:
        yield chunk[:rest]


def transfer(direction: str, port: int, size: int, host: str | None, pid: int | None) -> Transfer:
    headers = {"Host": host} if host else {}
    base = f"http://127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(httpx.Client(timeout=120))
        rss = stack.enter_context(RssSampler(pid)) if pid else None
        started = time.perf_counter()
        if direction == "download":
            with client.stream("GET", f"{base}/bytes/{size}", headers=headers) as reply:
                received = sum(len(chunk) for chunk in reply.iter_raw())
            moved, status = received, reply.status_code
        else:
            reply = client.post(f"{base}/upload", content=upload_body(size), headers=headers)
            moved, status = int(reply.text) if reply.text.isdigit() else -1, reply.status_code
        seconds = time.perf_counter() - started
    if status != 200 or moved != size:
        raise RuntimeError(f"{direction} through port {port}: status {status}, {moved} of {size}")
    result = Transfer(direction, size, seconds, size / MIB / seconds)
    if rss is not None:
        result.rss_before_mib, result.rss_peak_mib = rss.before, rss.peak
        result.rss_growth_mib = rss.growth
    return result


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


@dataclass
class CreateToServe:
    hostnames: int
    median_ms: float
    p95_ms: float
    max_ms: float
    api_median_ms: float
    """The `POST` alone."""
    samples_ms: list[float]


def measure_create_to_200(gateway: Gateway, backend_port: int, count: int) -> CreateToServe:
    step(f"create → first 200 for {count} new hostnames")
    totals, posts = [], []
    with gateway.client() as api:
        for number in range(count):
            hostname = f"new{number}.{BENCH_HOST}"
            started = time.perf_counter()
            create_proxy(api, hostname, backend_port)
            posted = time.perf_counter()
            served = wait_for_200(gateway.ports.http, hostname)
            totals.append((served - started) * 1000)
            posts.append((posted - started) * 1000)
    result = CreateToServe(
        count,
        percentile(totals, 50),
        percentile(totals, 95),
        max(totals),
        percentile(posts, 50),
        [round(v, 3) for v in totals],
    )
    step(f"  median {result.median_ms:.1f} ms, p95 {result.p95_ms:.1f} ms")
    return result


@dataclass
class ManyHosts:
    hostnames: int
    sampled: int
    rss_empty_mib: float
    create_seconds: float
    rss_live_mib: float
    """After creating them all through the API, with the sampled ones answering."""
    stop_seconds: float | None = None
    startup_seconds: float | None = None
    """Process start → ready banner, on the data dir that holds them."""
    all_serving_seconds: float | None = None
    """Process start → every sampled hostname answered 200."""
    rss_restarted_mib: float | None = None


def sample_of(hostnames: list[str], count: int) -> list[str]:
    step_size = max(1, len(hostnames) // count)
    chosen = hostnames[::step_size][:count]
    return chosen if hostnames[-1] in chosen else [*chosen[:-1], hostnames[-1]]


def measure_many_hosts(
    procs: Processes,
    workdir: Path,
    token: str,
    backend_port: int,
    count: int,
    results: Results,
) -> None:
    """Fills `results.many_hosts` step by step: what was measured stays when a later step fails."""
    step(f"{count:,} hostnames: create them through the API, restart, wait for them all")
    data_dir, ports, log = workdir / "data-many", GatewayPorts(), workdir / "gateway-many.log"
    failures = results.gateway_start_failures
    gateway = launch_gateway(procs, data_dir, ports, token, log, failures)
    rss_empty = rss_mib(gateway.pid)
    hostnames = [f"h{number}.{BENCH_HOST}" for number in range(count)]
    started = time.perf_counter()
    with gateway.client() as api:
        for hostname in hostnames:
            create_proxy(api, hostname, backend_port)
    create_seconds = time.perf_counter() - started
    sampled = sample_of(hostnames, SAMPLED_HOSTS)
    for hostname in sampled:
        wait_for_200(ports.http, hostname)
    many = results.many_hosts = ManyHosts(
        count, len(sampled), rss_empty, create_seconds, rss_mib(gateway.pid)
    )
    step(f"  RSS {many.rss_live_mib:.0f} MiB (empty: {rss_empty:.0f} MiB); restarting")
    many.stop_seconds = gateway.stop()
    restarted = launch_gateway(procs, data_dir, ports, token, log, failures)
    try:
        many.startup_seconds = restarted.startup_seconds
        last = max(wait_for_200(ports.http, hostname) for hostname in sampled)
        many.all_serving_seconds = last - restarted.started_at
        many.rss_restarted_mib = rss_mib(restarted.pid)
    finally:
        restarted.stop()
    step(
        f"  start-up {many.startup_seconds:.2f} s, all serving after "
        f"{many.all_serving_seconds:.2f} s, RSS {many.rss_restarted_mib:.0f} MiB"
    )


# --- the run -----------------------------------------------------------------------------------


@dataclass
class RequestLogCost:
    """What the request log cost over the logging-on rounds (the `gateway` rows)."""

    written: int
    dropped: int
    redis_bytes: int
    """Growth of Redis's used_memory over the rounds (entries, indexes, stream, statistics)."""

    @property
    def bytes_per_million(self) -> float:
        return self.redis_bytes / self.written * 1e6 if self.written else math.nan


@dataclass
class LoggingRound:
    """One `gateway` row (logging on) and the `gateway logging off` row run right after it."""

    on: Throughput
    off: Throughput
    redis_cpu_us_per_request: float
    """CPU time of the logging gateway's Redis during its row, ÷ its requests."""
    batch_cpu_us_per_entry: float
    """The gateway's own measure of its CPU time preparing batches, ÷ the entries written."""

    @property
    def cpu_us(self) -> float:
        return self.on.cpu_us_per_request - self.off.cpu_us_per_request

    @property
    def rps_loss(self) -> float:
        return 1 - self.on.wrk.rps / self.off.wrk.rps if self.off.wrk.rps else math.nan


@dataclass
class Results:
    started: str
    options: dict[str, Any]
    machine: dict[str, Any]
    throughput: list[Throughput] = field(default_factory=list)
    nginx_skipped: str | None = None
    tls: str | None = None
    """The protocol and cipher the handshake client negotiated with the gateway."""
    handshakes: list[Handshakes] = field(default_factory=list)
    transfers: list[Transfer] = field(default_factory=list)
    create_to_200: CreateToServe | None = None
    many_hosts: ManyHosts | None = None
    gateway_start_failures: list[str] = field(default_factory=list)
    """Why each `oauthproxy run` that exited before its ready banner did (each was retried)."""
    request_log: RequestLogCost | None = None
    logging_rounds: list[LoggingRound] = field(default_factory=list)
    proxy_bound: ProxyBound | None = None
    """The proxy-bound tables: the gateway beside nginx, haproxy and Caddy, one core each."""
    error: str | None = None
    """Why the run stopped early, when it did."""


def _version(argv: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        lines = (done.stdout + done.stderr).strip().splitlines()
        return lines[0] if lines else "?"
    return "?"


def machine(nginx: str | None) -> dict[str, Any]:
    commit = _version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _version(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    return {
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "wrk": _version(["wrk", "-v"]),
        "nginx": _version([nginx, "-v"]) if nginx else None,
        "commit": commit + ("+dirty" if dirty not in ("", "?") else ""),
    }


def measure_https(
    procs: Processes,
    args: argparse.Namespace,
    gateway: Gateway,
    nginx: str | None,
    backend_port: int,
    workdir: Path,
    results: Results,
) -> None:
    """Plain HTTP through nginx (when installed), then HTTPS keep-alive and new handshakes
    through the gateway and nginx, with the certificate the gateway made for `BENCH_HOST`."""
    tls = fetch_certificate(VENV_BIN / "oauthproxy", gateway.env, CERT_NAME, workdir / "tls")
    sni_script = workdir / "sni.lua"
    sni_script.write_text(SNI_LUA)
    served = wait_for_https(client_context(tls.chain), gateway.ports.https, BENCH_HOST)
    results.tls = f"{served.protocol} {served.cipher}"
    step(f"https://{BENCH_HOST} serves the gateway's certificate ({results.tls})")
    results.throughput.append(
        measure_throughput(
            procs,
            "gateway https",
            f"https://{BENCH_HOST}:{gateway.ports.https}/",
            lambda: [gateway.pid],
            "gateway",
            args,
            script=sni_script,
        )
    )

    def handshakes(name: str, port: int, pids: Callable[[], list[int]], measured: str) -> None:
        step(f"new TLS handshakes {name}: 1 s warm-up, then {args.duration} s")
        result = measure_handshakes(
            name, port, BENCH_HOST, tls.chain, pids, measured, cpu_seconds, args.duration
        )
        results.handshakes.append(result)
        step(
            f"  {result.per_second:,.0f} handshakes/s, p50 {result.p50_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms, {result.cpu_us_per_handshake:.0f} µs CPU/handshake "
            f"({measured}), errors: {result.error_text()}"
        )

    handshakes("gateway", gateway.ports.https, lambda: [gateway.pid], "gateway")
    if nginx is None:
        results.nginx_skipped = "nginx is not installed"
        step("[yellow]nginx is not installed: no nginx rows[/]")
        return
    server, nginx_port, nginx_tls_port = start_nginx(
        procs, nginx, workdir / "nginx", backend_port, tls
    )
    nginx_pids = lambda: [server.pid, *children_of(server.pid)]  # noqa: E731
    try:
        results.throughput.append(
            measure_throughput(
                procs,
                "nginx",
                f"http://127.0.0.1:{nginx_port}/",
                nginx_pids,
                "nginx master+worker",
                args,
                headers=(f"Host: {BENCH_HOST}",),
            )
        )
        wait_for_https(client_context(tls.chain), nginx_tls_port, BENCH_HOST)
        results.throughput.append(
            measure_throughput(
                procs,
                "nginx https",
                f"https://{BENCH_HOST}:{nginx_tls_port}/",
                nginx_pids,
                "nginx master+worker",
                args,
                script=sni_script,
            )
        )
        handshakes("nginx", nginx_tls_port, nginx_pids, "nginx master+worker")
    finally:
        procs.stop(server)


def measure_auth(
    procs: Processes,
    args: argparse.Namespace,
    gateway: Gateway,
    signing: SigningKey,
    backend_port: int,
    results: Results,
) -> None:
    """One proxy measured twice, back to back: auth off, then auth on with a valid JWT."""
    port = gateway.ports.http
    host_header = f"Host: {AUTH_HOST}:{port}"
    with gateway.client() as api:
        create_proxy(api, AUTH_HOST, backend_port)
        wait_for_200(port, AUTH_HOST)
        url = f"http://127.0.0.1:{port}/"
        results.throughput.append(
            measure_throughput(
                procs,
                "gateway auth off",
                url,
                lambda: [gateway.pid],
                "gateway",
                args,
                headers=(host_header,),
            )
        )
    # should the gateway exit once auth is on, say so rather than time out
    try:
        headers = turn_auth_on(gateway, signing)
    except RuntimeError:
        if gateway.process.poll() is not None:
            raise RuntimeError(
                f"the gateway exited (code {gateway.process.returncode}) once auth was enabled "
                f"on {AUTH_HOST}; see its log"
            ) from None
        raise
    step(f"{AUTH_HOST}: 401 without a token, 200 with the JWT")
    results.throughput.append(
        measure_throughput(
            procs,
            "gateway auth",
            url,
            lambda: [gateway.pid],
            "gateway",
            args,
            headers=headers,
        )
    )


@dataclass
class LogCounters:
    written: int
    dropped: int
    redis_bytes: int
    cpu_seconds: float
    """The gateway's CPU time preparing batches (its own measure, see `RequestLogger`)."""


def log_counters(api: httpx.Client) -> LogCounters:
    """The request logger's written and dropped entries, its batch CPU time, and Redis's used
    memory."""
    report = api.get("/api/v1/logs/events", params={"hours": 1}).json()
    logger = report["logger"]
    return LogCounters(
        logger["written"],
        logger["dropped"],
        report.get("redis_used_memory", 0),
        logger.get("cpu_seconds", 0.0),
    )


def request_log_cost(api: httpx.Client, before: LogCounters) -> RequestLogCost:
    time.sleep(0.5)  # the last batch window
    after = log_counters(api)
    return RequestLogCost(
        after.written - before.written,
        after.dropped - before.dropped,
        after.redis_bytes - before.redis_bytes,
    )


def valkey_pid(data_dir: Path) -> int | None:
    """The pid of the embedded Redis a gateway started in `data_dir`."""
    try:
        return int((data_dir / "valkey.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def measure_logging(
    procs: Processes,
    args: argparse.Namespace,
    workdir: Path,
    gateway: Gateway,
    backend_port: int,
    results: Results,
) -> None:
    """`gateway` (logging on, the default) and `gateway logging off` (REQUEST_LOG_ENABLED=false,
    METRICS_ENABLED=false: the data plane builds no entries), back to back, `--rounds` times
    (the machine's other load changes between runs; the rounds' medians are reported). The
    table shows the round whose on/off CPU difference is the median."""
    quiet = launch_gateway(
        procs,
        workdir / "data-nolog",
        GatewayPorts(),
        gateway.token,
        workdir / "gateway-nolog.log",
        results.gateway_start_failures,
        {"REQUEST_LOG_ENABLED": "false", "METRICS_ENABLED": "false"},
    )
    with quiet.client() as api:
        create_proxy(api, BENCH_HOST, backend_port)
    wait_for_200(quiet.ports.http, BENCH_HOST)
    redis = valkey_pid(gateway.data_dir)
    with gateway.client() as api:
        before = log_counters(api)
    for number in range(1, args.rounds + 1):
        with gateway.client() as api:
            counted = log_counters(api)
        redis_before = cpu_seconds([redis] if redis else [])
        on = measure_throughput(
            procs,
            "gateway",
            f"http://127.0.0.1:{gateway.ports.http}/",
            lambda: [gateway.pid],
            "gateway",
            args,
            headers=(f"Host: {BENCH_HOST}",),
        )
        redis_cpu = cpu_seconds([redis] if redis else []) - redis_before
        time.sleep(0.3)  # the last batch window
        with gateway.client() as api:
            now = log_counters(api)
        entries = now.written - counted.written
        batch_cpu = (now.cpu_seconds - counted.cpu_seconds) / entries * 1e6 if entries else math.nan
        off = measure_throughput(
            procs,
            "gateway logging off",
            f"http://127.0.0.1:{quiet.ports.http}/",
            lambda: [quiet.pid],
            "gateway",
            args,
            headers=(f"Host: {BENCH_HOST}",),
        )
        requests = on.wrk.requests
        done = LoggingRound(
            on, off, redis_cpu / requests * 1e6 if requests else math.nan, batch_cpu
        )
        results.logging_rounds.append(done)
        step(
            f"  round {number}: logging costs {done.cpu_us:.1f} µs CPU/req and "
            f"{done.rps_loss * 100:.1f} % of req/s; Redis {done.redis_cpu_us_per_request:.1f} "
            f"µs CPU/req; batches {done.batch_cpu_us_per_entry:.1f} µs CPU/entry"
        )
    with gateway.client() as api:
        results.request_log = request_log_cost(api, before)
    quiet.stop()
    ordered = sorted(results.logging_rounds, key=lambda done: done.cpu_us)
    median = ordered[len(ordered) // 2]
    results.throughput += [median.on, median.off]


def run(procs: Processes, args: argparse.Namespace, workdir: Path, results: Results) -> None:
    """Measure everything, filling `results` as it goes (so a failure still reports the rest)."""
    nginx = nginx_binary()
    transfer_size = 64 * MIB if args.quick else GIB
    token = secrets.token_urlsafe(32)
    signing = SigningKey.new()

    if args.only_proxy_bound:
        results.proxy_bound = ProxyBound("")
        measure_proxy_bound(
            procs, args, workdir, token, results.gateway_start_failures, results.proxy_bound
        )
        return
    backend, backend_port = start_backend(procs)
    step(f"backend on port {backend_port} (pid {backend.pid})")
    gateway = launch_gateway(
        procs,
        workdir / "data",
        GatewayPorts(),
        token,
        workdir / "gateway.log",
        results.gateway_start_failures,
        {"OAUTH_JWT_PRIVATE_KEY_B64": signing.env_value, "OAUTH_ISSUER": ISSUER},
    )
    step(f"gateway ready in {gateway.startup_seconds:.2f} s (pid {gateway.pid}, {gateway.api_url})")
    with gateway.client() as api:
        # the certificate first: the proxy created next reuses it (it covers its hostname)
        api_call(
            api,
            "POST",
            "/api/v1/certificates/self-signed",
            {"cert_name": CERT_NAME, "domains": [BENCH_HOST]},
        )
        created = create_proxy(api, BENCH_HOST, backend_port)
        action = created.headers.get("x-certificate-action", "none")
        if action != "reused":
            raise RuntimeError(f"{BENCH_HOST} did not reuse certificate {CERT_NAME}: {action}")
    wait_for_200(gateway.ports.http, BENCH_HOST)

    direct = measure_throughput(
        procs,
        "direct",
        f"http://127.0.0.1:{backend_port}/",
        lambda: [backend.pid],
        "backend",
        args,
    )
    results.throughput.append(direct)
    measure_logging(procs, args, workdir, gateway, backend_port, results)
    if args.only_logging:
        gateway.stop()
        return
    measure_https(procs, args, gateway, nginx, backend_port, workdir, results)
    measure_auth(procs, args, gateway, signing, backend_port, results)
    size_text = f"{transfer_size // MIB} MiB"
    for direction in ("download", "upload"):
        step(f"{direction} {size_text}: directly, then through the gateway (RSS sampled)")
        plain = transfer(direction, backend_port, transfer_size, None, None)
        plain.direction = f"{direction} direct"
        proxied = transfer(direction, gateway.ports.http, transfer_size, BENCH_HOST, gateway.pid)
        proxied.direction = f"{direction} gateway"
        results.transfers += [plain, proxied]
        step(
            f"  {plain.mib_per_s:,.0f} MiB/s direct, {proxied.mib_per_s:,.0f} MiB/s through, "
            f"RSS +{proxied.rss_growth_mib:.1f} MiB"
        )

    results.create_to_200 = measure_create_to_200(gateway, backend_port, 20 if args.quick else 100)
    if gateway.process.poll() is not None:
        raise RuntimeError(f"the gateway exited (code {gateway.process.returncode})")
    gateway.stop()
    measure_many_hosts(procs, workdir, token, backend_port, 100 if args.quick else 1000, results)
    results.proxy_bound = ProxyBound("")
    measure_proxy_bound(
        procs, args, workdir, token, results.gateway_start_failures, results.proxy_bound
    )


# --- the report --------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


ROW_ORDER = (
    "direct",
    "gateway",
    "gateway logging off",
    "nginx",
    "gateway https",
    "nginx https",
    "gateway auth off",
    "gateway auth",
)
AUTH_TARGET = 0.8


def _https_lines(results: Results, by_row: dict[str, Throughput]) -> list[str]:
    lines = []
    if results.tls:
        lines.append(
            f"https: the keep-alive rows are wrk with SNI {BENCH_HOST} (a wrk script connects "
            f"to 127.0.0.1); handshakes: {HANDSHAKE_CLIENTS} client threads, each connection "
            f"connect + full handshake (no resumption) + GET / + close; gateway: {results.tls}"
        )
    for shake in results.handshakes:
        lines.append(
            f"new TLS handshakes/s, {shake.name}: {_f(shake.per_second, 0)}/s "
            f"(p50 {_f(shake.p50_ms, 2)} ms, p99 {_f(shake.p99_ms, 2)} ms; "
            f"{_f(shake.cpu_us_per_handshake, 0)} µs CPU/handshake of {shake.measured}, "
            f"client {_f(shake.client_cpu_us_per_handshake, 0)} µs; {shake.protocol}; "
            f"errors: {shake.error_text()})"
        )
    by_name = {shake.name: shake for shake in results.handshakes}
    if "gateway" in by_name and "nginx" in by_name and by_name["nginx"].per_second:
        lines.append(
            "new TLS handshakes/s, gateway ÷ nginx: "
            f"{_f(by_name['gateway'].per_second / by_name['nginx'].per_second, 2)}"
        )
    plain, auth = by_row.get("gateway auth off"), by_row.get("gateway auth")
    if plain is not None and auth is not None and plain.wrk.rps:
        ratio = auth.wrk.rps / plain.wrk.rps
        verdict = "meets" if ratio >= AUTH_TARGET else "BELOW"
        lines.append(
            f"auth: {AUTH_HOST} with a valid JWT {_f(auth.wrk.rps, 0)} req/s = "
            f"{_f(ratio, 2)} times the same proxy before auth was enabled ({_f(plain.wrk.rps, 0)} "
            f"req/s); {verdict} the target ≥ {AUTH_TARGET:.2f}; CPU "
            f"{_f(auth.cpu_us_per_request, 0)} vs {_f(plain.cpu_us_per_request, 0)} µs/req "
            "(behind benchmarks/backend.py, which spends more per request on the token and the "
            "identity headers: the gateway's own ratio is the line 'proxy-bound auth')"
        )
    return lines


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else math.nan


def _request_log_lines(results: Results) -> list[str]:
    rounds = results.logging_rounds
    lines = []
    if rounds:
        each = "; ".join(
            f"{done.cpu_us:.1f} µs, {done.rps_loss * 100:.1f} %, Redis "
            f"{done.redis_cpu_us_per_request:.1f} µs"
            for done in rounds
        )
        lines.append(
            f"request log, median of {len(rounds)} on/off rounds: logging costs "
            f"{_f(_median([done.cpu_us for done in rounds]), 1)} µs of gateway CPU/req and "
            f"{_f(_median([done.rps_loss * 100 for done in rounds]), 1)} % of req/s "
            "(targets: at most 15 µs and 10 %); the logging gateway's Redis spends "
            f"{_f(_median([done.redis_cpu_us_per_request for done in rounds]), 1)} µs CPU/req; "
            "the gateway's own measure of preparing batches (metrics, plan, JSON): "
            f"{_f(_median([done.batch_cpu_us_per_entry for done in rounds]), 1)} µs CPU/entry "
            f"(rounds: {each})"
        )
    if (cost := results.request_log) is not None:
        lines.append(
            f"request log in Redis: {cost.written:,} entries written, {cost.dropped:,} dropped; "
            f"Redis memory +{cost.redis_bytes / MIB:,.1f} MiB ≈ "
            f"{_f(cost.bytes_per_million / MIB, 0)} MiB per million logged requests (the "
            "stream is capped by LOG_STREAM_MAXLEN, the rest lives LOG_RETENTION_HOURS)"
        )
    return lines


def report_lines(results: Results) -> tuple[list[tuple[str, Table]], list[str]]:
    """The tables to print, each with its caption, and the lines below them."""
    table = Table(box=box.MARKDOWN, title=None)
    headings = ("path", "req/s", "p50 ms", "p99 ms", "vs direct", "CPU µs/req", "CPU of", "errors")
    for heading in headings:
        numeric = heading not in ("path", "CPU of", "errors")
        table.add_column(heading, justify="right" if numeric else "left", no_wrap=True)
    rows = sorted(
        results.throughput,
        key=lambda row: ROW_ORDER.index(row.name) if row.name in ROW_ORDER else len(ROW_ORDER),
    )
    by_row = {row.name: row for row in rows}
    direct = by_row["direct"].wrk.rps if "direct" in by_row else math.nan
    for row in rows:
        row.ratio = row.wrk.rps / direct if direct else math.nan
        table.add_row(
            row.name,
            _f(row.wrk.rps, 0),
            _f(row.wrk.p50_ms, 2),
            _f(row.wrk.p99_ms, 2),
            _f(row.ratio, 2),
            _f(row.cpu_us_per_request, 0),
            row.measured,
            row.wrk.error_text(),
        )
    lines = []
    if results.nginx_skipped:
        lines.append(f"nginx: skipped ({results.nginx_skipped})")
    lines += _https_lines(results, by_row)
    lines += _request_log_lines(results)
    by_name = {t.direction: t for t in results.transfers}
    for direction in ("download", "upload"):
        plain, proxied = by_name.get(f"{direction} direct"), by_name.get(f"{direction} gateway")
        if plain and proxied:
            lines.append(
                f"{direction} {proxied.bytes // MIB} MiB: gateway {_f(proxied.mib_per_s, 0)} MiB/s "
                f"(direct {_f(plain.mib_per_s, 0)} MiB/s), gateway RSS "
                f"{_f(proxied.rss_before_mib)} → peak {_f(proxied.rss_peak_mib)} MiB "
                f"(growth {_f(proxied.rss_growth_mib)} MiB)"
            )
    if (created := results.create_to_200) is not None:
        lines.append(
            f"create → first 200 ({created.hostnames} hostnames): median "
            f"{_f(created.median_ms)} ms, p95 {_f(created.p95_ms)} ms, max {_f(created.max_ms)} ms "
            f"(the POST alone: median {_f(created.api_median_ms)} ms)"
        )
    if (many := results.many_hosts) is not None:
        lines.append(
            f"{many.hostnames:,} hostnames: RSS {_f(many.rss_live_mib)} MiB "
            f"(empty gateway {_f(many.rss_empty_mib)} MiB; after restart "
            f"{_f(many.rss_restarted_mib)} MiB); created via API in "
            f"{_f(many.create_seconds, 2)} s"
        )
        lines.append(
            f"{many.hostnames:,} hostnames restart: start-up {_f(many.startup_seconds, 2)} s "
            f"(start → ready banner), all {many.sampled} sampled answer 200 after "
            f"{_f(many.all_serving_seconds, 2)} s; SIGTERM stop took {_f(many.stop_seconds, 2)} s"
        )
    made = [("data plane", table)] if results.throughput else []
    if (bound := results.proxy_bound) is not None:
        made += tables(bound)
        lines += proxy_bound_lines(bound, results.options["rounds"])
    load = results.machine.get("load_average_at_start")
    lines.append(
        f"machine: {results.machine.get('cpus')} CPUs, load average at start {load} "
        "(other load on the machine lowers every row)"
    )
    if results.error is not None:
        lines.append(f"INCOMPLETE RUN: {results.error}")
    if failures := results.gateway_start_failures:
        lines.append(
            f"gateway start-up: {len(failures)} `oauthproxy run` start(s) exited before the ready "
            f"banner (a bug; each was retried); last error: {failures[-1]}"
        )
    return made, lines


def _plain(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {key: _plain(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_plain(value) for value in obj]
    return obj


def is_complete(results: Results) -> bool:
    """Every row ran: what benchmarks/results.json (and docs/benchmarks.md) is made from."""
    options = results.options
    return results.error is None and not (
        options.get("only_logging") or options.get("only_proxy_bound")
    )


def write_results(
    results: Results, made: list[tuple[str, Table]], lines: list[str], latest: Path
) -> tuple[Path, Path]:
    """The run's JSON and Markdown under analysis/; a complete run's JSON also to `latest`
    (an interrupted, failed or --only-logging run never replaces the last complete one)."""
    ANALYSIS.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path, md_path = ANALYSIS / f"bench-{stamp}.json", ANALYSIS / f"bench-{stamp}.md"
    json_text = json.dumps(_plain(asdict(results)), indent=2) + "\n"
    json_path.write_text(json_text)
    if is_complete(results):
        latest.parent.mkdir(parents=True, exist_ok=True)
        latest.write_text(json_text)
    capture = Console(width=200, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    for caption, table in made:
        capture.print(f"{caption}:\n")
        capture.print(table)
        capture.print()
    options = " ".join(f"--{k}={v}" for k, v in results.options.items())
    machine_text = ", ".join(f"{k}: {v}" for k, v in results.machine.items())
    md_path.write_text(
        f"# oauthproxy benchmark, {results.started}\n\n"
        f"Options: {options}  \nMachine: {machine_text}\n\n"
        + "\n".join(line.rstrip() for line in capture.export_text().splitlines()).strip("\n")
        + "\n"
        + "\n"
        + "".join(f"- {line}\n" for line in lines)
        + "\n## wrk output\n\n"
        + "".join(
            f"### {t.name}\n\n```\n{t.wrk.output.strip()}\n```\n\n" for t in results.throughput
        )
    )
    return json_path, md_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the oauthproxy data plane against its backend and nginx."
    )
    parser.add_argument("--duration", type=int, default=None, help="seconds per wrk run (10)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 2 s wrk, 64 MiB transfers, 20 new hostnames, 100 hostnames",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="back-to-back logging on/off row pairs; their medians are reported (3)",
    )
    parser.add_argument(
        "--only-logging",
        action="store_true",
        help="run only the direct row and the logging on/off rounds",
    )
    parser.add_argument(
        "--only-proxy-bound",
        action="store_true",
        help="run only the proxy-bound part: the gateway, nginx, haproxy and Caddy in front of "
        "nginx `return 200`, one core each; HTTP/2; new TLS handshakes; WORKERS=2 vs 1",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=LATEST_RESULTS,
        help="where a completed run writes its JSON too (benchmarks/results.json)",
    )
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 2 if args.quick else 10
    if args.duration < 1 or args.connections < 1 or args.rounds < 1:
        parser.error("--duration, --connections and --rounds must be at least 1")
    return args


DATA_DIRS = (
    "data",
    "data-nolog",
    "data-many",
    "data-proxy-bound",
    "data-workers-1",
    "data-workers-2",
)
"""The gateways' data dirs under the work dir: an embedded Redis left running is stopped."""


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    args = parse_args()
    if shutil.which("wrk") is None:
        console.print("wrk is not installed (`just bench` installs it): apt-get install wrk")
        raise SystemExit(2)
    # SIGINT too: a shell's `cmd &` starts it with SIGINT ignored, and Ctrl-C must still stop all
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    procs = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="oauthproxy-bench-"))
    results = Results(
        started=datetime.now().astimezone().isoformat(timespec="seconds"),
        options={name: value for name, value in vars(args).items() if name != "results"},
        machine=machine(nginx_binary()),
    )
    try:
        run(procs, args, workdir, results)
    except KeyboardInterrupt:
        step("[yellow]interrupted: stopping everything this run started[/]")
        results.error = "interrupted"
    except (RuntimeError, httpx.HTTPError, subprocess.SubprocessError, OSError) as error:
        step(f"[red]benchmark failed:[/] {error}")
        results.error = str(error)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        procs.stop_all()
        for data in DATA_DIRS:
            stop_leftover_valkey(workdir / data)
    if results.error is None:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        step(f"logs kept in {workdir}")
    made, lines = report_lines(results)
    json_path, md_path = write_results(results, made, lines, args.results)
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    for caption, table in made:
        out.print(f"\n{caption}:")
        out.print(table)
    for line in lines:
        out.print(line, soft_wrap=True)
    written = [json_path.relative_to(ROOT), md_path.relative_to(ROOT)]
    if is_complete(results):
        written.append(args.results)
    out.print("\nwritten: " + ", ".join(map(str, written)))
    if results.error is not None:
        raise SystemExit(130 if results.error == "interrupted" else 1)


if __name__ == "__main__":
    main()
