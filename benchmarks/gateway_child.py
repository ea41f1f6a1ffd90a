"""`oauthproxy run` as a benchmark's child process, and the small HTTP probes that wait for it.

The gateway runs with the embedded Redis in a temporary data dir, free ports and a clean
environment; `launch_gateway` starts it again when it exits before its ready banner (and notes
why). `pinned_to` starts it under `taskset` on one CPU.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from harness import Processes, command_line, descendants, free_port, pinned, step

VENV_BIN = Path(__file__).resolve().parent.parent / ".venv" / "bin"
READY_TIMEOUT = 60.0
SERVE_TIMEOUT = 60.0


@dataclass
class GatewayPorts:
    http: int = field(default_factory=free_port)
    api: int = field(default_factory=free_port)
    https: int = field(default_factory=free_port)
    proxy_protocol: int = field(default_factory=free_port)


class GatewayExited(RuntimeError):
    """The gateway exited before its ready banner; `reason` is the last error line it logged."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Gateway:
    """`oauthproxy run` as a child process with the embedded Redis in `data_dir`."""

    def __init__(
        self,
        procs: Processes,
        data_dir: Path,
        ports: GatewayPorts,
        token: str,
        log: Path,
        extra_env: dict[str, str] | None = None,
        pinned_to: int | None = None,
    ) -> None:
        self.procs = procs
        self.data_dir = data_dir
        self.ports = ports
        self.token = token
        self.api_url = ""
        self._ready = threading.Event()
        self._ready_at = 0.0
        kept = ("PATH", "HOME", "LANG", "TZ", "PYTHONPATH")
        env = {k: v for k, v in os.environ.items() if k in kept}
        env |= {
            "OAUTHPROXY_DATA_DIR": str(data_dir),
            "SERVER_HOST": "127.0.0.1",
            "HTTP_PORT": str(ports.http),
            "API_PORT": str(ports.api),
            "HTTPS_PORT": str(ports.https),
            "PROXY_PROTOCOL_PORT": str(ports.proxy_protocol),
            "ADMIN_TOKEN": token,
        } | (extra_env or {})
        self.env = env
        self._log: IO[str] = log.open("a")
        log_start = self._log.tell()
        self.started_at = time.perf_counter()
        # cwd: the data dir's parent, so no `.env` of the checkout changes what is measured
        self.process = procs.start(
            [*pinned(pinned_to), str(VENV_BIN / "oauthproxy"), "run"],
            cwd=data_dir.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read_banner, daemon=True)
        self._reader.start()
        banner_or_eof = self._ready.wait(READY_TIMEOUT)
        if banner_or_eof and self.api_url:
            return
        if banner_or_eof:  # its stdout closed: it is exiting
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
        exited = self.process.poll() is not None
        self.stop()
        if exited:
            raise GatewayExited(_last_error(log, log_start))
        raise RuntimeError(f"the gateway printed no ready banner in {READY_TIMEOUT:g}s; see {log}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def serving_pids(self) -> list[int]:
        """The gateway and its worker processes (WORKERS), without its embedded Redis."""
        tree = descendants(self.pid)
        return [self.pid] + [child for child in tree if "valkey" not in command_line(child)]

    @property
    def startup_seconds(self) -> float:
        return self._ready_at - self.started_at

    def _read_banner(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._log.write(line)
            self._log.flush()
            if "is ready" in line:
                self._ready_at = time.perf_counter()
            elif (match := re.search(r"admin API\s+(\S+)", line)) and self._ready_at:
                self.api_url = match.group(1)
                self._ready.set()
        self._ready.set()

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )

    def stop(self) -> float:
        """SIGTERM, wait; then make sure its embedded Redis went with it. Returns seconds taken."""
        taken = self.procs.stop(self.process)
        stop_leftover_valkey(self.data_dir)
        self._reader.join(5)
        self._log.close()
        return taken


def _last_error(log: Path, offset: int) -> str:
    with log.open() as text:
        text.seek(offset)
        lines = [line.strip(" |+\n") for line in text]
    errors = [line for line in lines if re.match(r"[\w.]+(Error|Exception|Group)\b", line)]
    return (errors or [line for line in lines if line] or ["(nothing logged)"])[-1][:300]


START_ATTEMPTS = 10
SAME_FAILURE_LIMIT = 3
"""Give up sooner when a start fails the same way this many times in a row: not a race."""


def launch_gateway(
    procs: Processes,
    data_dir: Path,
    ports: GatewayPorts,
    token: str,
    log: Path,
    failures: list[str],
    extra_env: dict[str, str] | None = None,
    pinned_to: int | None = None,
) -> Gateway:
    """Start the gateway; when it exits before it is ready, say so, note why, and start it again."""
    reasons: list[str] = []
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            return Gateway(procs, data_dir, ports, token, log, extra_env, pinned_to)
        except GatewayExited as exited:
            failures.append(exited.reason)
            step(f"[yellow]the gateway exited before it was ready (attempt {attempt}):[/] {exited}")
            reasons.append(re.sub(r"\d+", "N", exited.reason))
            if reasons[-SAME_FAILURE_LIMIT:] == [reasons[-1]] * SAME_FAILURE_LIMIT:
                break
    raise RuntimeError(
        f"the gateway failed to start {len(reasons)} times in a row ({failures[-1]}); see {log}"
    )


def stop_leftover_valkey(data_dir: Path) -> None:
    """The embedded Redis the gateway started, if a killed gateway left it running."""
    try:
        pid = int((data_dir / "valkey.pid").read_text().strip())
        if b"valkey-server" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    step(f"[yellow]stopped the embedded Redis (pid {pid}) the gateway left running[/]")


def create_proxy(api: httpx.Client, hostname: str, backend_port: int) -> httpx.Response:
    reply = api.post(
        "/api/v1/proxy/targets/",
        json={"hostname": hostname, "target_url": f"http://127.0.0.1:{backend_port}"},
    )
    if reply.status_code not in (200, 201):
        raise RuntimeError(
            f"POST /api/v1/proxy/targets/ for {hostname} answered {reply.status_code}: "
            f"{reply.text[:500]}"
        )
    return reply


def api_call(api: httpx.Client, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
    reply = api.request(method, path, json=body)
    if reply.status_code not in (200, 201):
        raise RuntimeError(f"{method} {path} answered {reply.status_code}: {reply.text[:500]}")
    return reply


def probe(port: int, host: str, headers: tuple[str, ...] = (), close: bool = True) -> int:
    """One `GET /` with this Host on a new connection: the status code, or 0 when refused.
    `close=False` leaves out `Connection: close` (we close the socket after the status line)."""
    extra = "".join(f"{header}\r\n" for header in headers)
    extra += "Connection: close\r\n" if close else ""
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(request)
            head = b""
            while b"\r\n" not in head:
                data = sock.recv(4096)
                if not data:
                    return 0
                head += data
    except OSError:
        return 0
    return int(head.split(b" ", 2)[1])


def wait_for_200(
    port: int,
    host: str,
    timeout: float = SERVE_TIMEOUT,
    headers: tuple[str, ...] = (),
    expected: int = 200,
    close: bool = True,
) -> float:
    """Poll as fast as possible until `host` answers 200 (or `expected`); returns when it did."""
    deadline = time.perf_counter() + timeout
    while (status := probe(port, host, headers, close)) != expected:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{host} still answers {status} (not {expected}) after {timeout:g}s")
    return time.perf_counter()
