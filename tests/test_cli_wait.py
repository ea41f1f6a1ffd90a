"""`--wait` of `proxy-client cert create|renew` and `proxy create`, and the recipes that pass it,
as subprocesses against a real gateway that orders from a real Pebble: each returns once the
certificate is issued, with the issued certificate (or the proxy serving HTTPS) as its output.
Waiting for a certificate that cannot be issued in time ends at `--timeout` with one clear line
and exit status 1."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.pebble import Pebble
from tests.test_certificates_acme import http_port as http_port  # fixtures, shared
from tests.test_certificates_acme import pebble as pebble
from tests.test_cli_tokens import Cli, cli_for
from tests.test_cli_tokens import cli as cli

EMAIL = "ops@example.com"
WRAPPER = Path(__file__).resolve().parents[1] / "scripts" / "just"


@pytest.fixture
async def gateway(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    pebble: Pebble,
    http_port: int,
) -> Ready:
    """A gateway whose certificates Pebble issues (validating on its HTTP_PORT)."""
    settings = make_settings(
        acme_directory_url=pebble.directory_url,
        acme_ca_bundle=pebble.ca_file,
        acme_poll_interval_seconds=0.1,
        http_port=http_port,
        admin_email=EMAIL,
    )
    ready: Ready = await nursery.start(functools.partial(serve, settings, handle_signals=False))
    return ready


async def test_cert_create_waits_until_issued(cli: Cli) -> None:
    issued = await cli.json(
        "cert", "create", "web", "web.example.com", "--wait", "--timeout", "120"
    )
    assert (issued["cert_name"], issued["status"]) == ("web", "active")
    assert "BEGIN CERTIFICATE" in issued["fullchain_pem"]  # the certificate, not the 202 answer

    renewed = await cli.ok("cert", "renew", "web", "--wait", "--timeout", "120")
    assert "│ status " in renewed and "● active" in renewed
    assert "BEGIN" not in renewed
    after = await cli.json("cert", "show", "web")
    assert after["serial_number"] != issued["serial_number"]


async def test_proxy_create_waits_for_its_certificate(cli: Cli) -> None:
    created = await cli.json(
        "proxy", "create", "app.example.com", "http://127.0.0.1:3000", "--wait", "--timeout", "120"
    )
    assert created["cert_name"] == "proxy-app-example-com"  # the proxy as it is once issued
    assert created["https_outcome"] == {
        "action": "ordered",
        "detail": f"ordering certificate proxy-app-example-com for {EMAIL}",
        "cert_name": "proxy-app-example-com",
        "certificate_status": "active",
    }
    table = await cli.ok("proxy", "list")
    assert "HTTP | HTTPS✓" in table and "Legend: HTTPS✓ served with its certificate" in table


async def test_recipes_pass_wait_through(cli: Cli) -> None:
    recipe = await trio.run_process(
        [str(WRAPPER), "cert-create", "shop", "shop.example.com", "false", "", "", "true"],
        env=dict(cli.env),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert (recipe.returncode, recipe.stderr) == (0, b""), recipe
    assert "● active" in recipe.stdout.decode()
    proxy = await trio.run_process(
        [str(WRAPPER), "proxy-create", "shop.example.com", "http://127.0.0.1:3000",
         "false", "true", "true", "true", "", "", "true"],
        env=dict(cli.env),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )  # fmt: skip
    assert (proxy.returncode, proxy.stderr) == (0, b""), proxy
    last = proxy.stdout.decode().rstrip().splitlines()[-1]
    assert last == (
        "HTTPS, certificate reused: serving HTTPS with certificate shop; issued, HTTPS is served"
    )


async def test_config_load_waits_for_the_certificates_it_orders(cli: Cli, tmp_path: Path) -> None:
    await cli.ok("cert", "create", "web", "web.example.com", "--wait", "--timeout", "120")
    backup = tmp_path / "backup.yaml"
    await cli.ok("config", "save", str(backup))
    await cli.ok("cert", "delete", "web")
    rows = await cli.json("config", "load", str(backup), "--wait", "--timeout", "120")
    assert [row for row in rows if row["kind"] == "certificate"] == [
        {
            "kind": "certificate",
            "name": "web",
            "action": "created",
            "detail": "ordered from the ACME CA and issued",
        }
    ]
    assert (await cli.json("cert", "show", "web"))["status"] == "active"


async def serve_silence(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """A TCP port that accepts connections and never answers (an ACME directory that hangs);
    the connections close when the test ends."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    held: list[trio.abc.Stream] = []
    try:
        async with listeners[0]:
            task_status.started(listeners[0].socket.getsockname()[1])
            while True:
                held.append(await listeners[0].accept())
    finally:
        for stream in held:
            await trio.aclose_forcefully(stream)


async def test_waiting_for_a_certificate_that_is_not_issued_in_time_fails_clearly(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    silent: int = await nursery.start(serve_silence)
    settings = make_settings(
        acme_directory_url=f"http://127.0.0.1:{silent}/directory", admin_email=EMAIL
    )
    stalled: Ready = await nursery.start(functools.partial(serve, settings, handle_signals=False))
    cli = cli_for(stalled, tmp_path)
    waited = await cli.run("cert", "create", "slow", "slow.example.com", "--wait", "--timeout", "1")
    assert (waited.status, waited.stdout) == (1, ""), waited
    assert "Traceback" not in waited.stderr
    line = waited.stderr.strip()
    assert line.startswith("error: certificate slow is still pending after 1 s ("), line
    assert line.endswith("; just cert-status slow follows it"), line
    status = await cli.json("cert", "status", "slow")
    assert status["certificate_status"] == "pending"  # still ordering: nothing gave up but --wait
