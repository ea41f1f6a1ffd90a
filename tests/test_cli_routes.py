"""`proxy-client route …` as a subprocess against a real in-process gateway."""

from __future__ import annotations

from typing import Any

from tests.test_cli_tokens import Cli, cli

__all__ = ["cli"]  # the fixture, shared with the token CLI tests

NUMBERED = ("^/items/[0-9]+$", "url", "http://backend:8080")


def route_ids(routes: list[dict[str, Any]]) -> list[str]:
    return [route["route_id"] for route in routes]


async def test_create_with_every_option_then_show_and_list(cli: Cli) -> None:
    created = await cli.json(
        "route", "create", *NUMBERED,
        "--id", "numbered",
        "--priority", "80",
        "--methods", "get, POST",
        "--regex",
        "--description", "one item",
        "--proxies", "a.example.com,b.example.com",
    )  # fmt: skip
    assert created | {"created_at": None} == {
        "route_id": "numbered",
        "is_regex": True,
        "path_pattern": "^/items/[0-9]+$",
        "target_type": "url",
        "target_value": "http://backend:8080",
        "priority": 80,
        "methods": ["GET", "POST"],
        "description": "one item",
        "enabled": True,
        "scope": "proxy",
        "proxy_hostnames": ["a.example.com", "b.example.com"],
        "owner_token_hash": created["owner_token_hash"],
        "created_by": "admin",
        "created_at": None,
    }
    assert await cli.json("route", "show", "numbered") == created

    generated = await cli.json("route", "create", "/api/", "port", "3000")
    assert generated["route_id"].startswith("api-")
    assert (generated["priority"], generated["scope"]) == (50, "global")

    assert route_ids(await cli.json("route", "list")) == ["numbered", generated["route_id"]]
    table = await cli.ok("route", "list")
    assert "port:3000" in table
    assert "url:http://backend:8080" in table
    assert table.rstrip().endswith("Summary: 2 routes | 2 enabled | 1 proxy-scoped")


async def test_list_by_scope(cli: Cli) -> None:
    await cli.ok("route", "create", "/global/", "service", "auth", "--id", "everywhere")
    await cli.ok("route", "create", "/a/", "port", "3000", "--id", "a-only", "--proxies", "a.io")
    for scope, expected in [
        ("all", ["a-only", "everywhere"]),
        ("global", ["everywhere"]),
        ("proxy", ["a-only"]),
    ]:
        assert route_ids(await cli.json("route", "list-by-scope", scope)) == expected
    assert route_ids(await cli.json("route", "list-by-scope")) == ["a-only", "everywhere"]


async def test_update_changes_only_what_is_given(cli: Cli) -> None:
    await cli.ok("route", "create", "/api/", "port", "3000", "--id", "api", "--methods", "GET")
    updated = await cli.json(
        "route", "update", "api", "--priority", "5", "--no-enabled", "--target-value", "4000"
    )
    assert (updated["priority"], updated["enabled"], updated["target_value"]) == (5, False, "4000")
    assert (updated["path_pattern"], updated["methods"]) == ("/api/", ["GET"])

    anything = await cli.json("route", "update", "api", "--methods", "", "--path", "/v2/")
    assert (anything["methods"], anything["path_pattern"]) == ([], "/v2/")


async def test_delete(cli: Cli) -> None:
    await cli.ok("route", "create", "/api/", "port", "3000", "--id", "api")
    assert (await cli.json("route", "delete", "api"))["route_id"] == "api"
    assert await cli.json("route", "list") == []
    assert "No routes yet" in await cli.ok("route", "list")
    assert (
        await cli.fails("route", "delete", "api") == "error: route 'api' not found (field: route)"
    )


async def test_bad_input_names_the_field(cli: Cli) -> None:
    error = await cli.fails("route", "create", "/api/", "port", "99999")
    assert (
        error
        == "error: target_value: a port target is a number from 1 to 65535 (field: target_value)"
    )
    error = await cli.fails("route", "create", "/api/", "url", "x", "--scope", "proxy")
    assert error.endswith("(field: target_value)")
    assert "proxy_hostnames" in error
    await cli.ok("route", "create", "/api/", "port", "3000", "--id", "api")
    error = await cli.fails("route", "create", "/api/", "port", "3001", "--priority", "50")
    assert error.endswith("(field: path_pattern)")


async def test_another_token_neither_sees_nor_changes_your_route(cli: Cli) -> None:
    await cli.ok("route", "create", "/api/", "port", "3000", "--id", "api")
    other = {"TOKEN": (await cli.json("token", "generate", "dev"))["token"]}
    for command in (("show", "api"), ("delete", "api")):
        error = await cli.fails("route", *command, env=other)
        assert error == "error: route 'api' not found (field: route)"
    assert await cli.json("route", "list", env=other) == []
    assert (await cli.json("route", "show", "api"))["route_id"] == "api"


async def test_help_lists_the_commands_and_options(cli: Cli) -> None:
    group = await cli.ok("route", "--help")
    for command in ("list", "list-by-scope", "show", "create", "update", "delete"):
        assert command in group
    create_help = await cli.ok("route", "create", "--help")
    for option in ("--priority", "--methods", "--regex", "--description", "--scope", "--proxies"):
        assert option in create_help
