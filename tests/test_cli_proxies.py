"""`proxy-client proxy …` and `proxy-client service …` as subprocesses against a real gateway."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio
import yaml

from cli.commands.proxies import certificate_note, https_outcome
from oauthproxy.serve import Ready
from tests.test_cli_tokens import Cli
from tests.test_cli_tokens import cli as cli  # the fixture, shared

HOST = "app.example.com"


def rows(table: str) -> int:
    """The field rows of a field/value table."""
    return sum(1 for line in table.splitlines() if line.startswith("│"))


WRAPPER = Path(__file__).resolve().parents[1] / "scripts" / "just"


async def test_proxy_create_list_show_delete(cli: Cli) -> None:
    created = await cli.json(
        "proxy", "create", HOST, "http://127.0.0.1:3000", "--cert-name", "app-cert", "--no-http"
    )
    assert (created["hostname"], created["target_url"]) == (HOST, "http://127.0.0.1:3000/")
    assert (created["enable_http"], created["enable_https"]) == (False, True)
    assert created["cert_name"] == "app-cert"
    await cli.ok(
        "proxy", "create", "plain.example.com", "http://127.0.0.1:4000", "--email",
        "ops@example.com", "--staging", "--no-preserve-host",
    )  # fmt: skip

    listed = await cli.json("proxy", "list")
    assert [proxy["hostname"] for proxy in listed] == [HOST, "plain.example.com"]
    assert listed[1]["preserve_host_header"] is False
    table = await cli.ok("proxy", "list")
    assert re.search(r"│ app\.example\.com +│ http://127\.0\.0\.1:3000/ +│ HTTPS✓ ", table)
    assert "HTTP | HTTPS⚠" in table
    assert table.rstrip().splitlines()[-2:] == [
        "Legend: HTTPS✓ served with its certificate · "
        "HTTPS⚠ on, but no certificate yet: HTTP only (just cert-list)",
        "Summary: 2 proxies | 1 HTTPS",
    ]

    assert (await cli.json("proxy", "show", HOST)) == created
    shown = await cli.ok("proxy", "show", HOST)
    assert "app-cert" in shown and "│ listeners " in shown and "owner_token_hash" not in shown
    assert 8 <= rows(shown) <= 12
    hidden = len(created) - rows(shown) + 1  # `listeners` stands for enable_http and _https
    assert shown.rstrip().endswith(
        f"{hidden} more fields: --all shows every field, -o json the data"
    )
    everything = await cli.ok("proxy", "show", HOST, "--all")
    assert "owner_token_hash" in everything and "more fields" not in everything
    assert rows(everything) == len(created)
    assert yaml.safe_load(await cli.ok("proxy", "show", HOST, "-o", "yaml")) == created

    updated = await cli.json(
        "proxy", "update", HOST, "--target-url", "http://127.0.0.1:3001", "--header", "X-A=1"
    )
    assert (updated["target_url"], updated["custom_headers"]) == (
        "http://127.0.0.1:3001/",
        {"X-A": "1"},
    )

    deleted = await cli.json("proxy", "delete", HOST, "--delete-cert")
    assert deleted == {"hostname": HOST, "deleted_certificate": None}
    assert "plain.example.com" in await cli.ok("proxy", "delete", "plain.example.com")
    assert await cli.ok("proxy", "list") == (
        "No proxies yet. Create one: just proxy-create <hostname> <target-url>\n"
    )
    assert await cli.fails("proxy", "show", HOST) == (
        f"error: proxy '{HOST}' not found (field: proxy)"
    )
    assert (await cli.json("proxy", "delete", HOST, "--force"))["deleted"] is False


async def test_proxy_errors_name_the_field(cli: Cli) -> None:
    await cli.ok("proxy", "create", HOST, "http://127.0.0.1:3000")
    assert await cli.fails("proxy", "create", HOST, "http://127.0.0.1:3000") == (
        f"error: a proxy for {HOST} already exists (field: hostname)"
    )
    error = await cli.fails("proxy", "create", "other.example.com", "ftp://x")
    assert error.endswith("(field: target_url)")
    assert await cli.fails("proxy", "create", "other.example.com", "127.0.0.1:3000") == (
        "error: target_url: the URL has no scheme: add http:// or https:// "
        "(e.g. http://127.0.0.1:3000) (field: target_url)"
    )
    assert await cli.fails("proxy", "create", "localhost", "http://127.0.0.1:3000") == (
        "error: localhost is in API_HOSTNAMES: its requests on the public ports go to the admin "
        "API, so a proxy for it would never be used; choose another hostname, or remove it "
        "from API_HOSTNAMES (field: hostname)"
    )
    error = await cli.fails("proxy", "update", HOST, "--header", "no-equals")
    assert error == "error: --header expects NAME=VALUE, got 'no-equals'"


async def test_auth_and_resource_settings(cli: Cli) -> None:
    await cli.ok("proxy", "create", HOST, "http://127.0.0.1:3000")
    enabled = await cli.json(
        "proxy", "auth", "enable", HOST, "--auth-proxy", "auth.example.com", "--mode", "redirect"
    )
    assert (enabled["auth_enabled"], enabled["auth_mode"]) == (True, "redirect")
    configured = await cli.json(
        "proxy", "auth", "config", HOST, "--users", "alice,bob", "--emails", ""
    )
    assert configured["auth_required_users"] == ["alice", "bob"]
    assert configured["auth_required_emails"] is None
    assert configured["auth_proxy"] == "auth.example.com"
    assert (await cli.json("proxy", "auth", "show", HOST)) == configured
    assert (await cli.json("proxy", "auth", "disable", HOST))["auth_enabled"] is False

    assert await cli.json("proxy", "resource", "list") == []
    metadata = await cli.json(
        "proxy", "resource", "set", HOST, "--scopes", "mcp:read", "--stateful",
        "--server-info", '{"name": "demo"}',
    )  # fmt: skip
    assert metadata["resource_endpoint"] == "/mcp"
    assert metadata["resource_scopes"] == ["mcp:read"]
    assert metadata["resource_stateful"] is True
    assert metadata["resource_server_info"] == {"name": "demo"}
    assert (await cli.json("proxy", "resource", "show", HOST)) == metadata
    assert [row["hostname"] for row in await cli.json("proxy", "resource", "list")] == [HOST]
    assert (await cli.json("proxy", "resource", "clear", HOST))["resource_endpoint"] is None
    assert await cli.json("proxy", "resource", "list") == []
    error = await cli.fails("proxy", "resource", "set", HOST, "--custom-metadata", "[1]")
    assert error.startswith("error: --custom-metadata must be a JSON object")


async def test_service_register_and_list_all(cli: Cli, gateway: Ready) -> None:
    registered = await cli.json(
        "service", "register", "docs", "https://docs.example.com", "--description", "The docs"
    )
    assert (registered["service_name"], registered["description"]) == ("docs", "The docs")
    assert (await cli.json("service", "show-external", "docs")) == registered
    assert [s["service_name"] for s in await cli.json("service", "list-external")] == ["docs"]

    everything = await cli.json("service", "list-all")
    assert [(s["service_name"], s["service_type"]) for s in everything] == [
        ("api", "internal"),
        ("docs", "external"),
    ]
    assert everything[0]["target_url"] == gateway.api_url
    table = await cli.ok("service", "list-all")
    assert re.search(r"│ docs +│ external ", table)
    assert table.rstrip().endswith("Summary: 0 Docker | 1 External | 1 Internal")
    internal = await cli.json("service", "list-all", "--type", "internal")
    assert [s["service_name"] for s in internal] == ["api"]

    moved = await cli.json("service", "update-external", "docs", "https://new.example.com")
    assert moved["target_url"] == "https://new.example.com/"
    assert (await cli.json("service", "unregister", "docs"))["service_name"] == "docs"
    assert await cli.json("service", "list-external") == []
    assert await cli.fails("service", "register", "api", "https://x.example.com") == (
        "error: 'api' is reserved for the gateway's admin API (field: service_name)"
    )


async def test_proxy_create_says_what_happened_to_https(cli: Cli) -> None:
    skipped = await cli.ok("proxy", "create", HOST, "http://127.0.0.1:3000")
    assert skipped.rstrip().splitlines()[-1] == (
        "HTTPS, certificate skipped: no certificate ordered: no email (give cert_email, set the "
        "token's cert_email, or set ADMIN_EMAIL); the proxy serves HTTP only"
    )
    plain = await cli.ok(
        "proxy", "create", "plain.example.com", "http://127.0.0.1:3000", "--no-https"
    )
    assert "HTTPS," not in plain
    created = await cli.json("proxy", "create", "other.example.com", "http://127.0.0.1:3000")
    assert created["hostname"] == "other.example.com"
    assert created["https_outcome"] == {
        "action": "skipped",
        "detail": "no certificate ordered: no email (give cert_email, set the token's "
        "cert_email, or set ADMIN_EMAIL); the proxy serves HTTP only",
    }
    plain_json = await cli.json(
        "proxy", "create", "p2.example.com", "http://127.0.0.1:3000", "--no-https"
    )
    assert "https_outcome" not in plain_json


@pytest.mark.parametrize(
    ("headers", "note"),
    [
        ({}, None),
        (
            {"x-certificate-action": "reused", "x-certificate-detail": "serving HTTPS with c"},
            "HTTPS, certificate reused: serving HTTPS with c",
        ),
        (
            {
                "x-certificate-action": "ordered",
                "x-certificate-detail": "ordering c for a@b.c",
                "x-certificate-name": "c",
            },
            "HTTPS, certificate ordered: ordering c for a@b.c; it serves HTTPS once issued "
            "(just cert-list shows its status; --wait waits)",
        ),
    ],
)
def test_certificate_note(headers: dict[str, str], note: str | None) -> None:
    assert certificate_note(https_outcome(headers)) == note


async def test_a_failing_recipe_prints_one_error_line(cli: Cli) -> None:
    """The CLI's message only: just's own `error: Recipe ... failed` line is not added."""
    failed = await trio.run_process(
        [str(WRAPPER), "proxy-show", "nope.example.com"],
        env=dict(cli.env),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert failed.returncode == 1
    assert failed.stdout == b""
    assert failed.stderr.decode().splitlines() == [
        "error: proxy 'nope.example.com' not found (field: proxy)"
    ]
