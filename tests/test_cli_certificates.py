"""`proxy-client cert …` as a subprocess against a real gateway (its ACME server unreachable)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Any

import trio

from oauthproxy.storage import Storage
from tests.conftest import venv_bin
from tests.eventually import eventually
from tests.test_certificates_api import UNREACHABLE, store_expired
from tests.test_certificates_api import gateway as gateway  # the fixture: ACME unreachable
from tests.test_cli_tokens import Cli
from tests.test_cli_tokens import cli as cli  # the fixture, shared

HOST = "dev.example.com"


async def until(cli: Cli, command: tuple[str, ...], done: Callable[[Any], bool]) -> None:
    """Run `command` (JSON output) until `done(its output)`."""

    async def as_expected() -> bool:
        return done(await cli.json(*command))

    await eventually(as_expected, what=" ".join(command), within=20)


async def test_self_signed_list_show_renew_delete(cli: Cli) -> None:
    created = await cli.json("cert", "self-signed", "dev", HOST, "api.dev.example.com")
    assert (created["cert_name"], created["status"], created["self_signed"]) == (
        "dev",
        "active",
        True,
    )
    assert "private_key_pem" not in created

    table = await cli.ok("cert", "list")
    assert re.search(
        r"│ dev +│ dev\.example\.com, api\.dev\.example\.com +│ ● active +│ in 36[45]d ", table
    )
    assert table.rstrip().splitlines()[-2:] == [
        "Legend: ● active",
        "Summary: 1 certificate | 1 active",
    ]

    shown = await cli.ok("cert", "show", "dev")
    assert "fullchain_pem" not in shown and "BEGIN" not in shown and "PRIVATE KEY" not in shown
    assert "│ expires " in shown and "more fields: --all" in shown
    everything = await cli.ok("cert", "show", "dev", "--all")
    assert re.search(r"│ fullchain_pem +│ PEM: 1 certificate \(-o json has it\) +│", everything)
    assert "BEGIN" not in everything and "more fields" not in everything
    assert "BEGIN CERTIFICATE" in (await cli.json("cert", "show", "dev"))["fullchain_pem"]
    pem = await cli.ok("cert", "show", "dev", "--pem")
    assert pem.startswith("-----BEGIN CERTIFICATE-----") and pem.rstrip().endswith("-----")

    status = await cli.json("cert", "status", "dev")
    assert (status["cert_name"], status["certificate_status"]) == ("dev", "active")
    renewed = await cli.json("cert", "renew", "dev")
    assert renewed["status"] == "renewing"
    await until(
        cli, ("cert", "show", "dev"), lambda c: c["serial_number"] != created["serial_number"]
    )

    deleted = await cli.json("cert", "delete", "dev")
    assert deleted == {"cert_name": "dev", "deleted": True, "proxies_updated": []}
    assert (await cli.json("cert", "delete", "dev", "--force"))["deleted"] is False
    assert await cli.ok("cert", "list") == (
        "No certificates yet. Create one: just cert-create <name> <domain>\n"
    )


async def test_acme_orders_show_their_failure(cli: Cli) -> None:
    accepted = await cli.json("cert", "create", "web", "web.example.com", "--email", "a@b.co")
    assert (accepted["status"], accepted["status_url"]) == (
        "pending",
        "/api/v1/certificates/web/status",
    )
    multi = await cli.json(
        "cert", "create-multi", "both", "a.example.com", "b.example.com", "--email", "a@b.co",
        "--staging",
    )  # fmt: skip
    assert multi["domains"] == ["a.example.com", "b.example.com"]
    await until(cli, ("cert", "status", "web"), lambda s: s["certificate_status"] == "error")
    table = await cli.ok("cert", "list")
    assert re.search(r"│ web +│ web\.example\.com +│ ✗ error +│ — +│ cannot reach the ACME", table)
    error = (await cli.json("cert", "show", "web"))["last_error"]
    assert len(error) > 60  # so the list cuts it: one line, ending in an ellipsis
    web_lines = [line for line in table.splitlines() if "web.example.com" in line]
    assert len(web_lines) == 1 and "… │" in web_lines[0]
    legend = table.rstrip().splitlines()[-2]  # "both" may still be pending (◌) or failed too
    assert legend.startswith("Legend: ") and legend.endswith("✗ failed, expired or stopped")
    shown = await cli.ok("cert", "show", "web")
    assert "".join(shown.split()).count("".join(error.split())[-40:]) == 1  # whole, if wrapped
    assert await cli.fails("cert", "show", "web", "--pem") == (
        "error: certificate web has not been issued yet (status: error)"
    )


async def test_errors_name_the_problem(cli: Cli) -> None:
    assert await cli.fails("cert", "show", "nope") == (
        "error: certificate 'nope' not found (field: certificate)"
    )
    error = await cli.fails("cert", "create", "x", "not_a_host", "--email", "a@b.co")
    assert error.endswith("(field: domain)")
    error = await cli.fails("cert", "create", "x", "x.example.com")
    assert "ADMIN_EMAIL" in error and error.endswith("(field: email)")
    assert await cli.fails("cert", "self-signed", "x") == "error: give at least one domain"


async def test_an_expired_certificate_lists_as_expired(cli: Cli, storage: Storage) -> None:
    acme = {"email": "ops@example.com", "acme_directory_url": UNREACHABLE}
    await store_expired(storage, "old", "old.example.com", **acme)
    table = await cli.ok("cert", "list")
    assert re.search(r"│ old +│ old\.example\.com +│ ✗ expired +│ expired 1d ago ", table)


async def test_wait_ends_with_the_failure_in_one_line(cli: Cli) -> None:
    error = await cli.fails(
        "cert", "create", "down", "down.example.com", "--email", "a@b.co", "--wait"
    )
    assert error.startswith("error: certificate down failed: cannot reach the ACME server")


async def test_wait_shows_a_spinner_on_a_terminal(cli: Cli) -> None:
    """On a terminal (`script` gives the CLI one), --wait draws the issuance's stage beside a
    spinner while it polls; piped, stderr stays empty (the tests above)."""
    command = [venv_bin("proxy-client"), "cert", "create", "tty", "tty.example.com"]
    command += ["--email", "a@b.co", "--wait"]
    done = await trio.run_process(
        ["script", "-qec", shlex.join(command), "/dev/null"],
        env={**cli.env, "TERM": "xterm"},
        capture_stdout=True,
        check=False,
    )
    screen = done.stdout.decode(errors="replace")
    assert done.returncode == 1, screen
    assert re.search(r"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏].{0,20} certificate tty: (waiting|queued|ordering)", screen)
    assert "error: certificate tty failed: cannot reach the ACME server" in screen
