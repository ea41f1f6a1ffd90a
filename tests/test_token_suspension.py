"""A suspended token: its secret and its dashboard sessions answer 401 `token_suspended` with the
reason until the admin resumes it (the API, `proxy-client token suspend|resume`, the just
recipes); the admin token is never suspended and may act as a suspended token
(`X-Act-As-Token`), which is how `config load` restores a token before its records and resumes
it however the load ends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from oauthproxy.dashboard.sign_in import SignInRefused, token_for
from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.test_cli_tokens import WRAPPER, Cli, cli_for
from tests.test_proxies_api import TARGETS
from tests.test_reconciler_scope import proxy

TOKENS = "/api/v1/tokens/"
SECRET = "dev-secret-0123456789abcdefghijklmnopqrstu"
AS_DEV = {"Authorization": f"Bearer {SECRET}"}


async def _dev(api: httpx.AsyncClient, **fields: Any) -> None:
    made = await api.post(TOKENS, json={"name": "dev", "token": SECRET, **fields})
    assert made.status_code == 201, made.text


async def _as_dev(gateway: Ready, path: str = "/api/v1/tokens/info") -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=AS_DEV) as dev:
        return await dev.get(path)


async def test_a_suspended_token_is_refused_with_its_reason_until_resumed(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    await _dev(api)
    suspended = await api.put(f"{TOKENS}dev/suspended", json={"reason": "leaked in a CI log"})
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["suspended"] == "leaked in a CI log"

    refused = await _as_dev(gateway)
    assert refused.status_code == 401, refused.text
    body = refused.json()
    assert (body["error"], body["field"]) == ("token_suspended", "Authorization")
    assert "leaked in a CI log" in body["detail"] and SECRET not in refused.text
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    listed = {token["name"]: token for token in (await api.get(TOKENS)).json()}
    assert listed["dev"]["suspended"] == "leaked in a CI log"
    assert listed["admin"]["suspended"] is None

    again = await api.put(f"{TOKENS}dev/suspended", json={})  # the default reason replaces it
    assert again.json()["suspended"] == "suspended by the admin", again.text

    resumed = await api.delete(f"{TOKENS}dev/suspended")
    assert (resumed.status_code, resumed.json()["suspended"]) == (200, None), resumed.text
    works = await _as_dev(gateway)
    assert (works.status_code, works.json()["name"]) == (200, "dev"), works.text
    twice = await api.delete(f"{TOKENS}dev/suspended")  # resuming a working token: no change
    assert (twice.status_code, twice.json()["suspended"]) == (200, None), twice.text


async def test_a_conditional_resume_or_suspend_changes_only_the_reason_it_names(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    """`?if_reason=` on the resume and `if_reason` on the suspend change a token only while its
    suspension is that one (or it has none), checked in the write's transaction: `config load`
    resumes its own suspensions, never one the admin set while it ran (409 naming `if_reason`)."""
    await _dev(api, suspended="the load's")
    await api.put(f"{TOKENS}dev/suspended", json={"reason": "leaked"})
    kept = await api.delete(f"{TOKENS}dev/suspended", params={"if_reason": "the load's"})
    assert (kept.status_code, kept.json()["field"]) == (409, "if_reason"), kept.text
    assert "leaked" in kept.json()["detail"]
    replaced = await api.put(
        f"{TOKENS}dev/suspended", json={"reason": "another load's", "if_reason": "the load's"}
    )
    assert (replaced.status_code, replaced.json()["field"]) == (409, "if_reason"), replaced.text
    assert (await _as_dev(gateway)).status_code == 401
    assert (await api.get(f"{TOKENS}dev")).json()["suspended"] == "leaked"

    taken = await api.put(
        f"{TOKENS}dev/suspended", json={"reason": "another load's", "if_reason": "leaked"}
    )
    assert taken.json()["suspended"] == "another load's", taken.text
    resumed = await api.delete(f"{TOKENS}dev/suspended", params={"if_reason": "another load's"})
    assert (resumed.status_code, resumed.json()["suspended"]) == (200, None), resumed.text
    again = await api.delete(f"{TOKENS}dev/suspended", params={"if_reason": "another load's"})
    assert (again.status_code, again.json()["suspended"]) == (200, None), again.text
    assert (await _as_dev(gateway)).status_code == 200


async def test_the_admin_token_is_never_suspended_and_owners_suspend_nothing(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    refused = await api.put(f"{TOKENS}admin/suspended", json={"reason": "oops"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["field"] == "name"
    assert (await api.get("/api/v1/tokens/info")).status_code == 200

    await _dev(api)
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=AS_DEV) as dev:
        for path in (f"{TOKENS}dev/suspended", f"{TOKENS}admin/suspended"):
            answer = await dev.put(path, json={"reason": "x"})
            assert (answer.status_code, answer.json()["field"]) == (403, "Authorization")
    missing = await api.put(f"{TOKENS}nobody/suspended", json={})
    assert missing.status_code == 404, missing.text
    assert (await api.delete(f"{TOKENS}nobody/suspended")).status_code == 404


@pytest.mark.parametrize(
    "body",
    [{"reason": ""}, {"reason": "x" * 301}, {"reason": "a\x1b[2Jb"}, {"reason": 5}],
    ids=["empty", "long", "control", "number"],
)
async def test_a_bad_reason_is_refused_naming_the_field(
    api: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    await _dev(api)
    answer = await api.put(f"{TOKENS}dev/suspended", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "reason", answer.text
    created = await api.post(TOKENS, json={"name": "other", "suspended": body["reason"]})
    assert created.status_code == 422, created.text
    assert created.json()["field"] == "suspended", created.text


async def test_a_token_created_suspended_never_works_before_it_is_resumed(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    await _dev(api, suspended="waiting for its records")
    refused = await _as_dev(gateway)
    assert refused.json()["error"] == "token_suspended", refused.text
    assert "waiting for its records" in refused.json()["detail"]
    assert (await api.delete(f"{TOKENS}dev/suspended")).status_code == 200
    assert (await _as_dev(gateway)).status_code == 200


async def test_the_admin_acts_as_a_suspended_token_and_nobody_else_may(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    """What the admin creates acting as `dev` is dev's; the header from an owner token, or
    naming no token, is a 401 naming it; a suspended token cannot act as another either."""
    await _dev(api, suspended="restoring")
    acting = {"X-Act-As-Token": "dev"}
    made = await api.post(TARGETS, json=proxy("dev.example.com"), headers=acting)
    assert made.status_code == 201, made.text
    info = (await api.get("/api/v1/tokens/dev")).json()
    shown = (await api.get(f"{TARGETS}dev.example.com")).json()
    assert (shown["owner_token_hash"], shown["created_by"]) == (info["hash"], "dev")
    assert (await api.get("/api/v1/tokens/info", headers=acting)).json()["name"] == "dev"

    unknown = await api.get("/api/v1/tokens/info", headers={"X-Act-As-Token": "nobody"})
    assert (unknown.status_code, unknown.json()["field"]) == (401, "X-Act-As-Token")
    odd = await api.get("/api/v1/tokens/info", headers={"X-Act-As-Token": "hash:x"})
    assert (odd.status_code, odd.json()["field"]) == (401, "X-Act-As-Token")

    other = await api.post(TOKENS, json={"name": "other"})
    headers = {"Authorization": f"Bearer {other.json()['token']}", "X-Act-As-Token": "admin"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as owner:
        refused = await owner.get("/api/v1/tokens/info")
    assert (refused.status_code, refused.json()["field"]) == (401, "X-Act-As-Token")
    async with httpx.AsyncClient(
        base_url=gateway.api_url, headers={**AS_DEV, "X-Act-As-Token": "admin"}
    ) as suspended:
        still = await suspended.get("/api/v1/tokens/info")
    assert still.json()["error"] == "token_suspended", still.text


async def test_dashboard_sessions_and_github_sign_in_of_a_suspended_token_are_refused(
    api: httpx.AsyncClient,
    gateway: Ready,
    storage: Storage,
    make_settings: Callable[..., Settings],
) -> None:
    await _dev(api, github_users=["alice"])
    token = await storage.tokens.get("dev")
    assert token is not None
    session = await storage.dashboard.create_session(token, "alice", 600)
    headers = {"Authorization": f"Bearer {session}"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as browser:
        assert (await browser.get("/api/v1/tokens/info")).status_code == 200
        await api.put(f"{TOKENS}dev/suspended", json={"reason": "on leave"})
        refused = await browser.get("/api/v1/tokens/info")
        assert refused.json()["error"] == "token_suspended", refused.text
    with pytest.raises(SignInRefused, match="on leave"):
        await token_for("alice", storage, make_settings())
    await api.delete(f"{TOKENS}dev/suspended")
    assert (await token_for("alice", storage, make_settings())).name == "dev"


async def test_suspend_and_resume_from_the_cli_and_the_recipes(
    gateway: Ready, tmp_path: Path
) -> None:
    cli: Cli = cli_for(gateway, tmp_path)
    await cli.ok("token", "create", "dev", "--value", SECRET)
    shown = await cli.json("token", "suspend", "dev", "--reason", "on leave")
    assert shown["suspended"] == "on leave"
    table = await cli.ok("token", "list")
    assert "on leave" in table and table.rstrip().endswith("| 1 admin | 1 suspended")
    refused = await cli.fails("token", "info", env={"TOKEN": SECRET})
    assert refused.startswith("error: the token 'dev' is suspended: on leave"), refused
    assert refused.endswith("(field: Authorization)")
    assert (await cli.json("token", "resume", "dev"))["suspended"] is None
    assert (await cli.json("token", "info", env={"TOKEN": SECRET}))["name"] == "dev"

    error = await cli.fails("token", "suspend", "admin")
    assert error == "error: the admin token cannot be suspended (field: name)"

    for recipe in (["token-suspend", "dev", "rotating"], ["token-resume", "dev"]):
        done = await trio.run_process(
            [str(WRAPPER), *recipe],
            env=dict(cli.env),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, b""), done
        expected = "rotating" if recipe[0] == "token-suspend" else None
        assert (await cli.json("token", "get", "dev"))["suspended"] == expected


async def test_a_token_the_admin_suspended_is_saved_and_restored_suspended(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    """A backup keeps the admin's suspension: restored, the token stays suspended after the load
    (a leaked token the admin had shut must not come back working); its records come back."""
    from cli.client import ApiClient
    from cli.commands.backup import collect, load_backup

    await _dev(api)
    acting = {"X-Act-As-Token": "dev"}
    assert (await api.post(TARGETS, json=proxy("dev.example.com"), headers=acting)).is_success
    await api.put(f"{TOKENS}dev/suspended", json={"reason": "leaked"})

    def save() -> dict[str, Any]:
        with httpx.Client(base_url=gateway.api_url, timeout=30) as http:
            return collect(ApiClient(http, gateway.admin_token.secret))

    def load(saved: dict[str, Any]) -> list[dict[str, str]]:
        with httpx.Client(base_url=gateway.api_url, timeout=30) as http:
            return load_backup(ApiClient(http, gateway.admin_token.secret), saved, force=False)

    saved = await trio.to_thread.run_sync(save)
    assert saved["tokens"][0]["suspended"] == "leaked"
    assert (await api.delete(f"{TOKENS}dev")).status_code == 200
    rows = await trio.to_thread.run_sync(load, saved)
    assert [row["action"] for row in rows] == ["created", "created"], rows
    assert (await api.get(f"{TOKENS}dev")).json()["suspended"] == "leaked"
    assert (await _as_dev(gateway)).json()["error"] == "token_suspended"
    shown = (await api.get(f"{TARGETS}dev.example.com")).json()
    assert shown["created_by"] == "dev"
