"""`proxy-client service …` for Docker services and ports, as subprocesses against a real gateway
whose DOCKER_HOST is the tests' real dockerd."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import trio

from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.conftest import free_port
from tests.docker_engine import IMAGE, Engine
from tests.eventually import eventually
from tests.test_cli_tokens import Cli
from tests.test_cli_tokens import cli as cli  # the fixture, shared
from tests.test_docker_services import serve_on


@pytest.fixture
async def gateway(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    docker_engine: Engine,
) -> Ready:
    """The gateway `cli` talks to, driving the tests' dockerd."""
    return await serve_on(nursery, make_settings, docker_engine)


async def test_service_commands_drive_the_engine(cli: Cli, docker_engine: Engine) -> None:
    port = free_port()
    command = f"sh,-c,echo cli-started; exec httpd -f -p 127.0.0.1:{port} -h /www"
    created = await cli.json(
        "service", "create", "clisvc", IMAGE, "--port", str(port), "--memory", "64m",
        "--cpu", "0.5", "--networks", "host", "--command", command,
    )  # fmt: skip
    assert (created["status"], created["internal_port"]) == ("running", port)

    table = await cli.ok("service", "list")
    assert re.search(r"│ clisvc +│ docker +│ ● running +│ — +│ 64m/0.5cpu", table), table
    assert "Summary: 1 Docker" in table
    everything = await cli.json("service", "list-all", "--type", "docker")
    assert [s["service_name"] for s in everything] == ["clisvc"]

    async def logged() -> bool:
        return "cli-started" in await cli.ok("service", "logs", "clisvc", "20")

    # each check is a proxy-client process: seconds each on a busy machine
    await eventually(logged, what="clisvc's start in `service logs`", within=30)
    assert (await cli.json("service", "stats", "clisvc"))["memory_limit"] == 64 * 1024 * 1024
    assert (await cli.json("service", "stop", "clisvc"))["status"] == "exited"
    assert (await cli.json("service", "start", "clisvc"))["status"] == "running"
    assert (await cli.json("service", "restart", "clisvc"))["status"] == "running"
    shown = await cli.json("service", "show", "clisvc")
    assert (shown["service_name"], shown["memory_limit"]) == ("clisvc", "64m")
    cleaned = await cli.json("service", "cleanup")
    assert cleaned == {"removed_containers": [], "removed_records": [], "removed_networks": []}
    updated = await cli.json("service", "update", "clisvc", "--memory", "80m")
    assert updated["memory_limit"] == "80m"

    proxy = await cli.json("service", "proxy-create", "clisvc")
    assert proxy["hostname"] == "clisvc.localhost"

    added = await cli.json("service", "port-add", "clisvc", "12001", "0.0.0.0")
    assert (added["host_port"], added["bind_address"]) == (12001, "0.0.0.0")
    assert [p["port_name"] for p in await cli.json("service", "port-list", "clisvc")] == [
        "port-12001"
    ]
    checked = await cli.json("service", "port-check", "12001")
    assert (checked["available"], checked["reason"]) == (False, "port 12001 is already allocated")
    refused = await cli.fails("service", "port-add", "clisvc", "6379")
    assert "restricted" in refused
    assert (await cli.json("service", "ports-global", "--available-only"))["allocated"] == 1
    await cli.ok("service", "port-remove", "clisvc", "port-12001")

    deleted = await cli.json("service", "delete", "clisvc", "--delete-proxy")
    assert deleted["deleted_proxies"] == ["clisvc.localhost"]
    gone = docker_engine.docker("ps", "-a", "--filter", "name=^clisvc$", "--format", "{{.Names}}")
    assert gone == ""
    assert await cli.ok("service", "list") == (
        "No services yet. Create one: just service-create <name> <image>\n"
    )


async def test_the_unified_table_shows_each_kind_with_status_ports_and_limits(
    cli: Cli, docker_engine: Engine
) -> None:
    created = await cli.json(
        "service", "create", "tabled", IMAGE, "--port", "80", "--expose", "--memory", "256m",
        "--cpu", "0.5", "--command", "sleep,300",
    )  # fmt: skip
    [port] = created["port_configs"]
    assert (port["container"], port["bind"]) == (80, "127.0.0.1")
    await cli.ok("service", "register", "ext", "http://10.1.2.3:8080")

    table = await cli.ok("service", "list-all")
    assert re.search(rf"│ tabled +│ docker +│ ● running +│ {port['host']}→80 +│ 256m/0.5cpu", table)
    assert re.search(r"│ ext +│ external +│ ● active +│ — +│ — ", table), table
    assert re.search(r"│ api +│ internal +│ ● active ", table), table
    assert "Summary: 1 Docker | 1 External | 1 Internal" in table, table
    only_docker = await cli.ok("service", "list-all", "--type", "docker")
    assert "tabled" in only_docker and "ext" not in only_docker

    docker_engine.docker("rm", "-f", "tabled")  # the session's engine outlives this test
