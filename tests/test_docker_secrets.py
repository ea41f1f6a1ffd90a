"""An owner's container environment (its API keys) never goes on the `docker` CLI's command
line, which every local user of the gateway's host reads in /proc/*/cmdline while the CLI runs.

The engine's `docker` binary is wrapped, on the gateway's PATH, by a script that records every
argv it is run with (and the mode of any env file it is given, as it is given it), then runs
the real CLI: what a local user would see, without racing the CLI for /proc."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.docker_engine import IMAGE, Engine
from tests.test_docker_services import SERVICES, admin_of, create, serve_on

MARKER = "sk-live-7f3a9c0e5b1d4e2f8a6c"
"""A secret an owner keeps in its service's environment."""

RECORDER = """#!{python} -S
import json, os, stat, sys
args = sys.argv[1:]
env_files = {{}}
for index, arg in enumerate(args):
    path = args[index + 1] if arg == "--env-file" and index + 1 < len(args) else None
    if arg.startswith("--env-file="):
        path = arg.split("=", 1)[1]
    if path:
        with open(path, "rb") as seen:
            content = seen.read().decode()
        env_files[path] = {{
            "mode": stat.S_IMODE(os.stat(path).st_mode),
            "directory_mode": stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode),
            "content": content,
        }}
with open({log!r}, "a") as log:
    log.write(json.dumps({{"argv": args, "env_files": env_files}}) + "\\n")
os.execv({real!r}, [{real!r}, *args])
"""


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The log of every docker CLI run from now on: the `docker` on PATH records, then runs
    the real one."""
    real = shutil.which("docker")
    assert real is not None
    log = tmp_path / "docker-argv.jsonl"
    wrapper = tmp_path / "bin" / "docker"
    wrapper.parent.mkdir()
    wrapper.write_text(RECORDER.format(python=sys.executable, log=str(log), real=real))
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    return log


@pytest.fixture
async def admin(
    recorded: Path,
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    docker_engine: Engine,
) -> AsyncIterator[httpx.AsyncClient]:
    gateway: Ready = await serve_on(nursery, make_settings, docker_engine)
    async with admin_of(gateway) as client:
        yield client


def runs(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def environment_in(engine: Engine, name: str) -> list[str]:
    env: list[str] = json.loads(engine.docker("inspect", name))[0]["Config"]["Env"]
    return env


def assert_never_on_a_command_line(log: Path) -> list[dict[str, Any]]:
    """No docker run carried the marker in its argv; the env files that did carry it were the
    gateway's user's alone (0600 in a 0700 directory), and are gone now. Answers those runs."""
    recorded = runs(log)
    assert recorded, "the gateway ran no docker CLI through the wrapper"
    for run in recorded:
        assert not any(MARKER in arg for arg in run["argv"]), run["argv"]
    carried = [
        (path, seen)
        for run in recorded
        for path, seen in run["env_files"].items()
        if MARKER in seen["content"]
    ]
    assert carried, "no env file carried the environment"
    for path, seen in carried:
        assert (seen["mode"], seen["directory_mode"]) == (0o600, 0o700)
        assert not Path(path).exists() and not Path(path).parent.exists()
    return [run for run in recorded if run["env_files"]]


async def test_a_services_environment_reaches_the_container_but_no_command_line(
    admin: httpx.AsyncClient, docker_engine: Engine, recorded: Path
) -> None:
    environment = {"API_KEY": MARKER, "EMPTY": "", "SPACED": f" {MARKER} = x#y "}
    await create(admin, "vault", image=IMAGE, command=["sleep", "300"], environment=environment)
    assert len(assert_never_on_a_command_line(recorded)) == 1
    env = environment_in(docker_engine, "vault")
    assert {f"API_KEY={MARKER}", "EMPTY=", f"SPACED= {MARKER} = x#y "} <= set(env)
    assert docker_engine.docker("exec", "vault", "sh", "-c", 'echo "$API_KEY"') == MARKER

    # a new environment recreates the container: the same way
    changed = await admin.put(f"{SERVICES}vault", json={"environment": {"API_KEY": MARKER * 2}})
    assert changed.status_code == 200, changed.text
    assert len(assert_never_on_a_command_line(recorded)) == 2
    assert f"API_KEY={MARKER * 2}" in environment_in(docker_engine, "vault")
    await admin.delete(f"{SERVICES}vault")


@pytest.mark.parametrize(
    ("environment", "says"),
    [
        ({"PEM": f"line one\n{MARKER}"}, "line break"),
        ({"A=B": "1"}, "not a variable name"),
        ({"#A": "1"}, "not a variable name"),
        ({"A B": "1"}, "not a variable name"),
    ],
)
async def test_an_environment_an_env_file_cannot_carry_is_a_422_naming_it(
    admin: httpx.AsyncClient, docker_engine: Engine, environment: dict[str, str], says: str
) -> None:
    """An env file holds one `NAME=value` a line: what it cannot carry is refused, never
    passed on mangled (a line break would start another variable), and the answer does not
    quote the value."""
    body = {"service_name": "refused", "image": IMAGE, "environment": environment}
    refused = await admin.post(SERVICES, json=body)
    assert refused.status_code == 422, refused.text
    assert "environment" in refused.text and says in refused.text
    assert MARKER not in refused.text
    assert "refused" not in docker_engine.docker("ps", "-a", "--format", "{{.Names}}")
