"""HTTP/2 and new TLS handshakes in the proxy-bound part of `just bench`: gateway vs nginx.

- HTTP/2: `h2load -t1 -c10 -m10` over TLS for `--duration` seconds (after a 1 s run to warm
  up), SNI and `:authority` `bench.local` (`--connect-to` 127.0.0.1). A gateway that does not
  select `h2` by ALPN gets a note instead of a row: h2load would measure nothing useful.
- New TLS handshakes: `tls_auth.measure_handshakes` (8 client threads of this process, pinned
  to the load CPU; each connection is connect → handshake → `GET /` → close), the server on its
  own CPU; full handshakes, then resumed ones (each thread offers its last session's ticket).
  The server's CPU per handshake is the number to compare.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

from gateway_child import Gateway
from harness import Processes, cpu_seconds, pinned, running_on, step
from proxy_rows import ProxyBound, ProxyRow, Round
from tls_auth import measure_handshakes

H2_CONNECTIONS = 10
H2_STREAMS = 10


def negotiated_alpn(port: int, host: str) -> str:
    """The protocol the server at 127.0.0.1:`port` selects when offered h2 and http/1.1."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return tls.selected_alpn_protocol() or "none"


def parse_h2load(output: str) -> tuple[float, int, int, str]:
    """(req/s, requests that succeeded, requests that failed, the application protocol).
    h2load's "succeeded" are the 2xx and 3xx answers; its "failed" are every other request
    (non-2xx/3xx statuses, and "errored", of which "timeout" is a part)."""
    rate = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", output)
    counts = re.search(
        r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", output
    )
    protocol = re.search(r"Application protocol: (\S+)", output)
    if rate is None or counts is None:
        raise RuntimeError(f"unexpected h2load output:\n{output}")
    succeeded, failed = map(int, counts.groups())
    return float(rate.group(1)), succeeded, failed, protocol.group(1) if protocol else "none"


def run_h2load(
    procs: Processes, port: int, host: str, seconds: int, cpu: int | None
) -> tuple[float, int, int, str]:
    argv = [
        "h2load",
        "-t1",
        f"-c{H2_CONNECTIONS}",
        f"-m{H2_STREAMS}",
        f"-D{seconds}",
        f"--connect-to=127.0.0.1:{port}",
        f"https://{host}:{port}/",
    ]
    child = procs.start(
        [*pinned(cpu), *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output, _ = child.communicate(timeout=seconds + 60)
    if child.returncode != 0:
        raise RuntimeError(f"h2load failed (code {child.returncode}):\n{output}")
    return parse_h2load(output)


def measure_http2(
    procs: Processes,
    args: argparse.Namespace,
    result: ProxyBound,
    gateway: Gateway,
    nginx_tls_port: int,
    nginx_tree: Callable[[], list[int]],
    cpu: int | None,
    host: str,
) -> None:
    if shutil.which("h2load") is None:
        result.notes.append(
            "HTTP/2: skipped, h2load is not installed (apt-get install nghttp2-client)"
        )
        return
    servers = []
    for name, port, pids in (
        ("gateway", gateway.ports.https, gateway.serving_pids),
        ("nginx", nginx_tls_port, nginx_tree),
    ):
        if (alpn := negotiated_alpn(port, host)) == "h2":
            servers.append((name, port, pids))
        else:
            note = f"{name}: HTTP/2 not negotiated (ALPN selected {alpn}): no HTTP/2 row"
            result.notes.append(note)
            step(f"[yellow]{note}[/]")
    rows = {name: ProxyRow(name, "h2 over TLS", "") for name, _, _ in servers}
    for number in range(1, args.rounds + 1):
        for name, port, pids in servers:
            step(
                f"HTTP/2 round {number}/{args.rounds}: {name}, h2load -c{H2_CONNECTIONS} "
                f"-m{H2_STREAMS}"
            )
            run_h2load(procs, port, host, 1, cpu)
            watched = pids()
            before = cpu_seconds(watched)
            rate, ok, failed, protocol = run_h2load(procs, port, host, args.duration, cpu)
            per_request = (cpu_seconds(watched) - before) / ok * 1e6 if ok else math.nan
            step(f"  {rate:,.0f} req/s, {per_request:.0f} µs CPU/req ({protocol})")
            row = rows[name]
            row.measured = "gateway" if name == "gateway" else "master+worker"
            row.detail = f"{protocol}, h2load -c{H2_CONNECTIONS} -m{H2_STREAMS}"
            row.add(Round(rate, math.nan, per_request, ok, failed))
    result.http2 += rows.values()


def measure_handshakes_rows(
    args: argparse.Namespace,
    result: ProxyBound,
    gateway: Gateway,
    nginx_tls_port: int,
    nginx_tree: Callable[[], list[int]],
    ca_file: Path,
    cpu: int | None,
    host: str,
) -> None:
    """Full and resumed handshakes against the gateway and nginx, round-robin `--rounds` times."""
    kinds = [
        (name, port, pids, resume)
        for resume in (False, True)
        for name, port, pids in (
            ("gateway", gateway.ports.https, gateway.serving_pids),
            ("nginx", nginx_tls_port, nginx_tree),
        )
    ]
    rows: dict[str, ProxyRow] = {}
    for number in range(1, args.rounds + 1):
        for name, port, pids, resume in kinds:
            label = f"{name} resumed" if resume else name
            step(f"TLS handshakes round {number}/{args.rounds}: {label}")
            with running_on(cpu):
                done = measure_handshakes(
                    label, port, host, ca_file, pids, name, cpu_seconds, args.duration, resume
                )
            share = done.resumed / done.handshakes if done.handshakes else math.nan
            step(
                f"  {done.per_second:,.0f}/s, {done.cpu_us_per_handshake:.0f} µs CPU/handshake, "
                f"{share:.0%} resumed, errors {done.error_text()}"
            )
            measured = "gateway" if name == "gateway" else "master+worker"
            row = rows.setdefault(label, ProxyRow(label, "", measured))
            row.detail = f"{done.protocol}, {share:.0%} resumed"
            errors = sum(done.errors.values())
            row.add(
                Round(
                    done.per_second,
                    done.p99_ms,
                    done.cpu_us_per_handshake,
                    done.handshakes,
                    errors,
                )
            )
    result.handshakes += rows.values()
