"""Python bytecodes per new TLS connection, by function and by package: where the gateway's
Python goes, counted rather than sampled.

    python benchmarks/opcodes.py [--connections N] [--clients K] [--top T]
        [--keep-alive [--auth] | --h2]

The gateway runs under `opcode_tracer.py`, which counts every bytecode its main thread runs
(and every frame entered or resumed) between two signals. Per window: N connections (connect
→ TLS handshake → `GET /` → close) from K client threads at once, as the "new TLS handshakes"
rows of `just bench` (default 8), then an idle window as long (the gateway's background:
Redis reads, timers), subtracted. It prints, per connection, the bytecodes and frames in all,
by package (oauthproxy, trio, the standard library, ...), and the T functions that run the
most bytecodes. With `--keep-alive`, the proxy-bound case instead: N plain-HTTP `GET /`
requests over K keep-alive connections (one per client thread), counted per request (with
`--auth` too, to the auth rows' proxy, auth on, each request with a valid JWT, as
`cpu_per_request.py --auth` sends them); with `--h2`, N HTTP/2 requests from h2load over K TLS
connections, 10 streams at once on each.

What to read in it: the counts are exact and do not move with the machine's load (tracing
makes the gateway many times slower, so no time is given); between two runs they differ only
in how trio's run-loop passes are shared among the clients' connections. A bytecode is not a
fixed cost (a call, a dict lookup and an attribute store differ), so compare counts of the same
function, or use `just bench-instructions` for what the whole costs. Needs nginx (the backend).
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gateway_child import Gateway, create_proxy
from harness import step
from instructions import HERE, Server, connections, in_threads, stage, start_gateway
from proxy_bound import HOST
from tls_auth import AUTH_HOST, ISSUER, SigningKey, turn_auth_on

WARM_UP = 20
TRACER = HERE / "benchmarks" / "opcode_tracer.py"


Counts = dict[tuple[str, str], tuple[int, int]]
"""(file:line, function) → (bytecodes, frames entered or resumed), of one window."""


def _window(
    server: Server, out: Path, number: int, work: Callable[[], object]
) -> tuple[Counts, float]:
    """Count while `work()` runs: the tracer's counts and the seconds it took."""
    os.kill(server.pid, signal.SIGUSR1)
    time.sleep(0.2)  # (the signal is handled between two bytecodes of the main thread)
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    os.kill(server.pid, signal.SIGUSR2)
    path = out / f"opcodes.{number}.tsv"
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the tracer wrote no {path.name}")
        time.sleep(0.1)
    counts: Counts = {}
    for line in path.read_text().splitlines():
        bytecodes, frames, where, name = line.split("\t")
        counts[(where, name)] = (int(bytecodes), int(frames))
    return counts, elapsed


def package(where: str) -> str:
    """Whose code a file is: oauthproxy, a site-packages distribution, the standard library."""
    if "/oauthproxy/" in where and "site-packages" not in where:
        return "oauthproxy"
    if "site-packages/" in where:
        return where.split("site-packages/")[1].split("/")[0].removesuffix(".py")
    if where.startswith("<attrs generated"):
        return "attrs (generated)"
    return "standard library"


def short(where: str) -> str:
    for marker in ("site-packages/", f"{HERE}/", "/lib/python3."):
        if marker in where:
            where = where.split(marker, 1)[1]
            return where.split("/", 1)[1] if marker == "/lib/python3." else where
    return where


def keep_alive(
    server: Server, count: int, clients: int, headers: tuple[str, ...] = (f"Host: {HOST}",)
) -> Callable[[], None]:
    """`count` plain-HTTP `GET /` requests over `clients` keep-alive connections at once, each
    with `headers` (`Host` among them)."""
    request = ("GET / HTTP/1.1\r\n" + "".join(f"{line}\r\n" for line in headers) + "\r\n").encode()
    failures: list[str] = []

    def client(share: int) -> None:
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=120) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buffered = b""
            for _ in range(share):
                sock.sendall(request)
                while b"\r\n\r\n" not in buffered:
                    buffered += sock.recv(65536)
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    failures.append(head.split(b"\r\n")[0].decode(errors="replace"))
                    return
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(buffered) < length:
                    buffered += sock.recv(65536)
                buffered = buffered[length:]

    def run() -> None:
        in_threads(count, clients, client)
        if failures:
            raise RuntimeError(f"{server.name}: {failures[0]}")

    return run


def http2(server: Server, count: int, clients: int) -> Callable[[], None]:
    """`count` HTTP/2 `GET /` from h2load over `clients` TLS connections, 10 streams on each."""
    argv = ["h2load", f"-n{count}", f"-c{clients}", "-m10", f"--connect-to=127.0.0.1:{server.port}"]

    def run() -> None:
        done = subprocess.run(
            [*argv, f"https://{HOST}:{server.port}/"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0 or f"{count} succeeded" not in done.stdout:
            raise RuntimeError(f"h2load: {done.stdout[-500:]}{done.stderr[-500:]}")

    return run


def report(busy: Counts, idle: Counts, count: int, top: int, unit: str) -> None:
    per: dict[tuple[str, str], tuple[float, float]] = {}
    for key, (bytecodes, frames) in busy.items():
        idle_bytecodes, idle_frames = idle.get(key, (0, 0))
        per[key] = ((bytecodes - idle_bytecodes) / count, (frames - idle_frames) / count)
    total = sum(bytecodes for bytecodes, _ in per.values())
    frames = sum(entered for _, entered in per.values())
    print(f"per {unit}: {total:,.0f} bytecodes, {frames:,.0f} frames entered or resumed")
    packages: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for (where, _), (bytecodes, entered) in per.items():
        packages[package(where)][0] += bytecodes
        packages[package(where)][1] += entered
    for name, (bytecodes, entered) in sorted(packages.items(), key=lambda item: -item[1][0]):
        if bytecodes >= 0.5:
            share = bytecodes / total if total else 0
            print(f"  {name:<20} {bytecodes:7,.0f} bytecodes ({share:4.0%}), {entered:5.0f} frames")
    print(f"\n{'bytecodes':>10} {'frames':>7}  function")
    ranked = sorted(per.items(), key=lambda item: -item[1][0])
    for (where, name), (bytecodes, entered) in ranked[:top]:
        print(f"{bytecodes:10.1f} {entered:7.2f}  {short(where)} {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=400, help="per window (default 400)")
    parser.add_argument("--clients", type=int, default=8, help="at once (default 8, as the bench)")
    parser.add_argument("--top", type=int, default=40, help="functions listed (default 40)")
    parser.add_argument(
        "--keep-alive",
        action="store_true",
        help="plain-HTTP requests over keep-alive connections instead of new TLS connections",
    )
    parser.add_argument(
        "--h2", action="store_true", help="HTTP/2 requests (h2load, 10 streams per connection)"
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help="with --keep-alive: to the auth rows' proxy (auth on), each request with a valid JWT",
    )
    args = parser.parse_args()
    if args.auth and not args.keep_alive:
        sys.exit("--auth counts keep-alive requests: give --keep-alive too")
    signing = SigningKey.new() if args.auth else None
    extra_env = (
        {"OAUTH_JWT_PRIVATE_KEY_B64": signing.env_value, "OAUTH_ISSUER": ISSUER}
        if signing is not None
        else {}
    )
    sent = [(f"Host: {HOST}",)]
    """The headers each keep-alive request carries (`protect` sets the auth rows')."""

    workload: Callable[[Server, int, int], Callable[[], None]] = (
        (lambda server, count, clients: keep_alive(server, count, clients, sent[0]))
        if args.keep_alive
        else http2
        if args.h2
        else connections
    )
    what = (
        "requests over keep-alive connections"
        if args.keep_alive
        else "HTTP/2 requests"
        if args.h2
        else "connections"
    )
    with stage("opcodes-") as run:
        step("starting the gateway under the opcode tracer")
        os.chdir(HERE)

        def protect(gateway: Gateway) -> None:  # (as `cpu_per_request.py --auth` does)
            if signing is not None:
                with gateway.client() as api:
                    create_proxy(api, AUTH_HOST, run.backend)
                sent[0] = turn_auth_on(gateway, signing)

        command = f"{HERE}/.venv/bin/python {TRACER} {run.out}"
        server = start_gateway(run, HERE, 0, command, extra_env, protect)
        workload(server, WARM_UP, args.clients)()  # untraced
        step(f"{args.connections} {what} from {args.clients} clients, traced")
        traced = workload(server, args.connections, args.clients)
        busy, elapsed = _window(server, run.out, 1, traced)
        step(f"an idle window of {elapsed:.1f} s, traced")
        idle, _ = _window(server, run.out, 2, lambda: time.sleep(elapsed))
    unit = (
        "request (keep-alive, plain HTTP, auth on)"
        if args.auth
        else "request (keep-alive, plain HTTP)"
        if args.keep_alive
        else "HTTP/2 request"
        if args.h2
        else "new TLS connection"
    )
    report(busy, idle, args.connections, args.top, unit)


if __name__ == "__main__":
    sys.exit(main())
