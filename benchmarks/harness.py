"""The processes, CPU clocks and wrk runs every benchmark of `just bench` shares.

`Processes` starts each child in its own session and stops them all when a run ends;
`cpu_seconds` reads user + system time from `/proc/<pid>/stat`; `run_wrk` runs wrk and parses
its report into a `WrkResult`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024

console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 140)


def step(message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}")


# --- processes ---------------------------------------------------------------------------------


class Processes:
    """Every child process of this run; `stop_all` ends those still running, newest first."""

    def __init__(self) -> None:
        self._children: list[subprocess.Popen[Any]] = []

    def start(self, argv: list[str], **options: Any) -> subprocess.Popen[Any]:
        # Its own session: a Ctrl-C in the terminal reaches only us, and we stop it in order.
        child: subprocess.Popen[Any] = subprocess.Popen(argv, start_new_session=True, **options)
        self._children.append(child)
        return child

    @staticmethod
    def stop(child: subprocess.Popen[Any], how: int = signal.SIGTERM, wait: float = 20) -> float:
        """Signal `child` and wait for it (SIGKILL after `wait` seconds); returns seconds taken."""
        started = time.perf_counter()
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(how)
            try:
                child.wait(wait)
            except subprocess.TimeoutExpired:
                step(f"[yellow]pid {child.pid} ignored signal {how} for {wait:g}s: killing it[/]")
                child.kill()
                child.wait()
        return time.perf_counter() - started

    def stop_all(self) -> None:
        for child in reversed(self._children):
            self.stop(child)
        self._children.clear()


def pinned(cpu: int | None) -> list[str]:
    """The argv prefix that runs a program (all its threads and children) on one CPU."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, child: subprocess.Popen[Any], what: str, timeout: float = 15) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"{what} exited with code {child.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} does not listen on port {port} after {timeout:g}s")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _stat_fields(pid)
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int(_stat_fields(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...)."""
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for parent in frontier for child in children_of(parent)]
        found += frontier
    return found


def command_line(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


@contextlib.contextmanager
def running_on(cpu: int | None) -> Iterator[None]:
    """Run this thread (and the threads it starts meanwhile) on one CPU, then as before."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE / MIB


class RssSampler:
    """Samples a process's RSS every `interval` seconds in a thread while the block runs."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.before = 0.0
        self.peak = 0.0
        self.samples = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, rss_mib(self.pid))
                self.samples += 1

    def __enter__(self) -> RssSampler:
        self.before = self.peak = rss_mib(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()
        with contextlib.suppress(OSError):
            self.peak = max(self.peak, rss_mib(self.pid))

    @property
    def growth(self) -> float:
        return self.peak - self.before


# --- wrk ---------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: dict[str, int]
    output: str

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())

    def error_text(self) -> str:
        parts = [f"{self.non_2xx} non-2xx/3xx"] if self.non_2xx else []
        parts += [f"{n} {kind}" for kind, n in self.socket_errors.items() if n]
        return ", ".join(parts) or "0"


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse_wrk(output: str) -> WrkResult:
    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output)
        if match is None:
            raise RuntimeError(f"unexpected wrk output (no {pattern!r}):\n{output}")
        return match

    requests = find(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b")
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+(?:us|ms|s|m))\s*$", output, re.M))
    if set(latency) != {"50", "99"}:
        raise RuntimeError(f"unexpected wrk output (no latency distribution):\n{output}")

    def percentile(key: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", latency[key]).groups()  # type: ignore[union-attr]
        return _ms(number, unit)

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    kinds = ("connect", "read", "write", "timeout")
    return WrkResult(
        requests=int(requests.group(1)),
        seconds=_ms(requests.group(2), requests.group(3)) / 1000,
        rps=float(find(r"Requests/sec:\s+([\d.]+)").group(1)),
        p50_ms=percentile("50"),
        p99_ms=percentile("99"),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=dict(zip(kinds, map(int, sockets.groups()), strict=True))
        if sockets
        else dict.fromkeys(kinds, 0),
        output=output,
    )


def run_wrk(
    procs: Processes,
    url: str,
    duration: int,
    connections: int,
    headers: tuple[str, ...] = (),
    script: Path | None = None,
    cpu: int | None = None,
) -> WrkResult:
    argv = [*pinned(cpu), "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for header in headers:
        argv += ["-H", header]
    if script is not None:
        argv += ["-s", str(script)]
    child = procs.start([*argv, url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = child.communicate(timeout=duration + 60)
    if child.returncode != 0:
        raise RuntimeError(f"wrk failed (code {child.returncode}):\n{output}")
    return parse_wrk(output)
