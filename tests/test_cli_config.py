"""`proxy-client config save|load`, `service register-oauth` and `service cleanup-orphaned` as
subprocesses against a real in-process gateway."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.serve import Ready
from oauthproxy.storage import Storage, keys
from tests.test_cli_tokens import Cli, cli

__all__ = ["cli"]

SITE = "site.example.com"
PLAIN = "plain.example.com"
RESOURCE = "https://site.example.com"


async def _ok(response: httpx.Response) -> Any:
    assert response.is_success, response.text
    return response.json()


async def _as(gateway: Ready, secret: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=gateway.api_url, headers={"Authorization": f"Bearer {secret}"}
    )


async def _build(api: httpx.AsyncClient, gateway: Ready) -> dict[str, str]:
    """A varied configuration: two tokens (dev owns things, ops nothing), one certificate, a
    service, two proxies (one with auth, resource metadata and selective routes; one switched
    off), routes of both scopes (the global one the admin's: owner tokens cannot hold one) and a
    protected resource. The tokens' secrets by name."""
    secrets = {}
    for name, email in (("dev", "dev@example.com"), ("ops", None)):
        body = {"name": name, **({"cert_email": email} if email else {})}
        secrets[name] = (await _ok(await api.post("/api/v1/tokens/generate", json=body)))["token"]
    async with await _as(gateway, secrets["dev"]) as dev:
        await _ok(
            await dev.post(
                "/api/v1/certificates/self-signed", json={"cert_name": "site", "domains": [SITE]}
            )
        )
        await _ok(
            await dev.post(
                "/api/v1/services/external",
                json={
                    "service_name": "backend",
                    "target_url": "http://127.0.0.1:3000",
                    "description": "the app",
                },
            )
        )
        proxy = f"/api/v1/proxy/targets/{SITE}"
        await _ok(
            await dev.post(
                "/api/v1/proxy/targets/",
                json={
                    "hostname": SITE,
                    "target_url": "http://127.0.0.1:3000",
                    "cert_name": "site",
                    "custom_headers": {"X-Team": "dev"},
                },
            )
        )
        await _ok(
            await dev.post(
                f"{proxy}/auth",
                json={"auth_required_users": ["alice"], "auth_allowed_scopes": ["mcp:read"]},
            )
        )
        await _ok(await dev.post(f"{proxy}/mcp", json={"resource_scopes": ["mcp:read"]}))
        await _ok(
            await dev.put(
                f"{proxy}/routes", json={"route_mode": "selective", "enabled_routes": ["to-app"]}
            )
        )
        await _ok(
            await dev.post(
                "/api/v1/routes/",
                json={
                    "route_id": "to-app",
                    "path_pattern": "/app/",
                    "target_type": "service",
                    "target_value": "backend",
                    "priority": 70,
                    "scope": "proxy",
                    "proxy_hostnames": [SITE],
                },
            )
        )
    await _ok(
        await api.post(
            "/api/v1/proxy/targets/",
            json={"hostname": PLAIN, "target_url": "http://127.0.0.1:4000", "enable_https": False},
        )
    )
    await _ok(await api.put(f"/api/v1/proxy/targets/{PLAIN}", json={"enabled": False}))
    await _ok(
        await api.post(
            "/api/v1/routes/",
            json={
                "route_id": "health",
                "path_pattern": "^/health$",
                "is_regex": True,
                "target_type": "port",
                "target_value": "3000",
                "priority": 10,
                "methods": ["GET"],
            },
        )
    )
    await _ok(
        await api.post(
            "/api/v1/resources/",
            json={"uri": RESOURCE, "name": "Site", "proxy_target": SITE, "scopes": ["mcp:read"]},
        )
    )
    return secrets


async def _wipe(api: httpx.AsyncClient) -> None:
    """Delete everything through the API: the tokens take what they own along."""
    for name in ("dev", "ops"):
        await _ok(await api.delete(f"/api/v1/tokens/{name}"))
    await _ok(await api.delete(f"/api/v1/proxy/targets/{PLAIN}"))
    await _ok(await api.delete("/api/v1/routes/health"))
    await _ok(await api.delete("/api/v1/resources/https%3A%2F%2Fsite.example.com"))
    for path in ("proxy/targets/", "routes/", "certificates/", "services/external", "resources/"):
        assert await _ok(await api.get(f"/api/v1/{path}")) == [], path
    assert [t["name"] for t in await _ok(await api.get("/api/v1/tokens/"))] == ["admin"]


def _content(path: Path) -> Any:
    data = yaml.safe_load(path.read_text())
    data.pop("saved_at")
    return data


async def test_round_trip_through_save_wipe_and_load(
    cli: Cli, api: httpx.AsyncClient, gateway: Ready, tmp_path: Path
) -> None:
    secrets = await _build(api, gateway)
    saved = tmp_path / "backup.yaml"
    table = await cli.ok("config", "save", str(saved))
    assert f"Saved to {saved} (mode 0600)" in table
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert saved.read_text().startswith("# oauthproxy configuration backup")
    first = _content(saved)
    assert [t["name"] for t in first["tokens"]] == ["dev", "ops"]
    assert first["tokens"][0]["token"] == secrets["dev"]
    site = next(p for p in first["proxies"] if p["hostname"] == SITE)
    assert (site["owner"], site["auth_enabled"], site["auth_required_users"]) == (
        "dev",
        True,
        ["alice"],
    )
    assert (site["resource_endpoint"], site["route_mode"]) == ("/mcp", "selective")
    assert first["certificates"] == [
        {
            "cert_name": "site",
            "domains": [SITE],
            "email": None,
            "staging": False,
            "self_signed": True,
            "owner": "dev",
        }
    ]
    assert "private_key_pem" not in saved.read_text()

    await _wipe(api)
    loaded = await cli.json("config", "load", str(saved))
    assert {row["action"] for row in loaded} == {"created"}, loaded
    assert len(loaded) == 2 + 1 + 1 + 2 + 2 + 1

    again = tmp_path / "again.yaml"
    await cli.ok("config", "save", str(again))
    assert _content(again) == first
    async with await _as(gateway, secrets["dev"]) as dev:
        assert (await _ok(await dev.get("/api/v1/tokens/info")))["name"] == "dev"
        proxy = await _ok(await dev.get(f"/api/v1/proxy/targets/{SITE}"))
        assert (proxy["created_by"], proxy["enable_https"], proxy["cert_name"]) == (
            "dev",
            True,
            "site",
        )
    plain = await _ok(await api.get(f"/api/v1/proxy/targets/{PLAIN}"))
    assert (plain["enabled"], plain["enable_http"], plain["enable_https"]) == (False, True, False)
    certificate = await _ok(await api.get("/api/v1/certificates/site"))
    assert certificate["status"] == "active"


async def test_existing_records_are_skipped_unless_forced(
    cli: Cli, api: httpx.AsyncClient, gateway: Ready, tmp_path: Path
) -> None:
    await _build(api, gateway)
    saved = tmp_path / "backup.yaml"
    await cli.ok("config", "save", str(saved))
    await _ok(await api.put("/api/v1/services/external/backend", json={"target_url": "http://x:1"}))
    await _ok(await api.put("/api/v1/routes/health", json={"priority": 11}))
    await _ok(await api.delete(f"/api/v1/proxy/targets/{SITE}/auth"))
    await _ok(await api.put(f"/api/v1/proxy/targets/{PLAIN}", json={"enabled": True}))

    skipped = await cli.json("config", "load", str(saved))
    assert {row["action"] for row in skipped} == {"skipped"}, skipped
    assert (await _ok(await api.get("/api/v1/routes/health")))["priority"] == 11
    table = await cli.ok("config", "load", str(saved))
    assert "0 created, 0 updated, 9 skipped, 0 failed" in table

    forced = await cli.json("config", "load", str(saved), "--force")
    actions = {(row["kind"], row["name"]): row["action"] for row in forced}
    assert actions[("token", "dev")] == "skipped"
    assert actions[("certificate", "site")] == "skipped"
    for kind, name in [
        ("service", "backend"),
        ("proxy", SITE),
        ("proxy", PLAIN),
        ("route", "health"),
        ("route", "to-app"),
        ("resource", RESOURCE),
    ]:
        assert actions[(kind, name)] == "updated", (kind, name)
    service = await _ok(await api.get("/api/v1/services/external/backend"))
    assert service["target_url"].rstrip("/") == "http://127.0.0.1:3000"
    assert (await _ok(await api.get("/api/v1/routes/health")))["priority"] == 10
    site = await _ok(await api.get(f"/api/v1/proxy/targets/{SITE}"))
    assert (site["auth_enabled"], site["auth_required_users"]) == (True, ["alice"])
    plain = await _ok(await api.get(f"/api/v1/proxy/targets/{PLAIN}"))
    assert plain["enabled"] is False
    again = tmp_path / "again.yaml"
    await cli.ok("config", "save", str(again))
    assert _content(again) == _content(saved)


def _backup(**sections: Any) -> str:
    return yaml.safe_dump({"format": "oauthproxy-config", "version": 1, **sections})


TOKEN = {"name": "dev", "token": "acm_" + "x" * 40}
SERVICE = {"service_name": "backend", "target_url": "http://127.0.0.1:3000", "owner": "dev"}


async def test_a_bad_file_is_refused_before_anything_is_written(
    cli: Cli, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    cases = [
        ("tokens: [unclosed\n", "is not valid YAML (line 2)"),
        ("- just a list\n", "backup (no 'format: oauthproxy-config')"),
        (_backup(version=7), "version 7 is not supported (only 1)"),
        (_backup(extra=[]), "unknown section 'extra'"),
        (
            _backup(tokens=[TOKEN], services=[SERVICE], proxies=[{"hostname": "a.example.com"}]),
            "proxies[0].target_url: required",
        ),
        (
            _backup(tokens=[TOKEN], services=[SERVICE, {**SERVICE, "colour": "red"}]),
            "services[1].colour: unknown field",
        ),
        (_backup(services=[SERVICE]), "services[0].owner: token 'dev' is not in the file"),
        (_backup(tokens=[TOKEN, dict(TOKEN)]), "tokens[1].name: 'dev' appears twice"),
        (_backup(routes={"route_id": "x"}), "routes must be a list"),
        # values a request cannot carry: they passed the check and the load crashed half-way,
        # the records before them written (the hunt's recursive alias; a billion-laughs alias
        # would hang it)
        (
            "format: oauthproxy-config\nversion: 1\nservices:\n"
            "- {service_name: s, target_url: 'http://127.0.0.1:3000', description: &a x}\n"
            "- {service_name: t, target_url: 'http://127.0.0.1:3000', description: *a}\n",
            "is not valid YAML (aliases are not allowed) (line 5)",
        ),
        (
            "format: oauthproxy-config\nversion: 1\nservices:\n"
            "- {service_name: s, target_url: 'http://127.0.0.1:3000', description: 2026-12-05}\n",
            "holds a value that is not JSON: Object of type date is not JSON serializable",
        ),
    ]
    for text, problem in cases:
        bad.write_text(text)
        error = await cli.fails("config", "load", str(bad))
        assert error.startswith(f"error: {bad}"), error
        assert error.endswith(problem), error
    assert await cli.fails("config", "load", str(tmp_path / "missing.yaml")) == (
        f"error: cannot read {tmp_path / 'missing.yaml'}: No such file or directory"
    )
    assert [t["name"] for t in await _ok(await api.get("/api/v1/tokens/"))] == ["admin"]
    assert await _ok(await api.get("/api/v1/services/external")) == []


async def test_a_refused_record_is_reported_and_the_rest_is_loaded(
    cli: Cli, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    file = tmp_path / "partly.yaml"
    proxy = {"hostname": "bad.example.com", "target_url": "not a url"}
    file.write_text(_backup(tokens=[TOKEN], services=[SERVICE], proxies=[proxy]))
    completed = await cli.run("--format", "json", "config", "load", str(file))
    assert completed.status == 1
    rows = {row["name"]: row for row in yaml.safe_load(completed.stdout)}
    assert (rows["dev"]["action"], rows["backend"]["action"]) == ("created", "created")
    assert rows["bad.example.com"]["action"] == "failed"
    assert "(field: target_url)" in rows["bad.example.com"]["detail"]
    assert await _ok(await api.get("/api/v1/proxy/targets/")) == []


async def test_save_and_load_need_the_admin_token(
    cli: Cli, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    secret = (await _ok(await api.post("/api/v1/tokens/generate", json={"name": "dev"})))["token"]
    file = tmp_path / "backup.yaml"
    error = await cli.fails("config", "save", str(file), env={"TOKEN": secret})
    assert error == "error: config save needs the admin token"
    assert not file.exists()
    file.write_text(_backup())
    error = await cli.fails("config", "load", str(file), env={"TOKEN": secret})
    assert error == "error: config load needs the admin token"


# --- service register-oauth ---------------------------------------------------------------------


async def test_register_oauth_points_the_service_at_the_issuer(cli: Cli) -> None:
    created = await cli.json("service", "register-oauth")
    assert (created["service_name"], created["description"]) == (
        "oauth",
        "OAuth 2.1 Authorization Server",
    )
    assert created["target_url"].rstrip("/") == "https://auth.localhost"
    assert await cli.json("service", "register-oauth") == created
    moved = await cli.json("service", "register-oauth", "--url", "https://login.example.com")
    assert moved["target_url"].rstrip("/") == "https://login.example.com"
    assert (await cli.json("service", "show-external", "oauth")) == moved


# --- service cleanup-orphaned -------------------------------------------------------------------


async def test_cleanup_orphaned_lists_then_removes(cli: Cli, storage: Storage) -> None:
    assert "No orphans found." in await cli.ok("service", "cleanup-orphaned")
    gone = "sha256:" + "ab" * 32
    await storage.proxies.create(
        ProxyTarget(
            hostname="gone.example.com",
            target_url="http://127.0.0.1:1",
            owner_token_hash=gone,
            created_by="ghost",
        )
    )
    await storage.redis.set(keys.service_url("phantom"), "http://phantom:80")

    dry = await cli.ok("service", "cleanup-orphaned", "--dry-run")
    assert "gone.example.com" in dry
    assert "Dry run: 2 would be removed, nothing was changed." in dry
    assert await storage.proxies.get("gone.example.com") is not None

    report = await cli.json("service", "cleanup-orphaned")
    assert report["removed"] == 2
    assert {o["name"] for o in report["orphans"]} == {"gone.example.com", "phantom"}
    assert await storage.proxies.get("gone.example.com") is None
    assert not await storage.redis.exists([keys.service_url("phantom")])


def test_the_config_recipes_work_where_just_was_run(tmp_path: Path) -> None:
    """`./scripts/just config-save backup.yaml` writes backup.yaml in the caller's directory, not
    the repository's (the wrapper runs recipes from the repository root)."""
    wrapper = Path(__file__).resolve().parents[1] / "scripts" / "just"
    shown = subprocess.run(
        [str(wrapper), "--dry-run", "config-save", "backup.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert f"cd '{tmp_path.resolve()}' && proxy-client config save 'backup.yaml'" in shown.stderr
