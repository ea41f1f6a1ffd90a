"""`config load` writes a record over one that exists under its name only when that record is
still the file owner's: a name freed after the backup and claimed since by another owner (or
claimed while a restore runs, by an owner whose token came back first) is that owner's now, and
the file's record, written over it as the admin, would hand it the settings of the file's owner
(a configured header carrying a backend's API key, auth settings)."""

from __future__ import annotations

from typing import cast

import httpx
import trio

from oauthproxy.serve import Ready
from tests.test_proxies_api import TARGETS
from tests.test_reconciler_scope import proxy

# --- restore: an owner whose token is restored first races the load ------------------------------

VICTIM_SECRET = "vic_" + "v" * 40
ATTACKER_SECRET = "att_" + "a" * 40
SHOP = "shop.example.com"


def _restore_file() -> dict[str, object]:
    """What `config save` wrote before Redis lost its data: the victim owns `shop`, whose
    configured header carries a backend API key; the attacker owns a proxy of its own."""
    return {
        "format": "oauthproxy-config",
        "version": 1,
        "tokens": [
            {"name": "attacker", "token": ATTACKER_SECRET},
            {"name": "victim", "token": VICTIM_SECRET},
        ],
        "certificates": [],
        "services": [],
        "proxies": [
            {
                "hostname": "own.example.com",
                "target_url": "http://127.0.0.1:3000",
                "owner": "attacker",
            },
            {
                "hostname": SHOP,
                "target_url": "http://127.0.0.1:3000",
                "custom_headers": {"X-Api-Key": "victim-backend-key"},
                "owner": "victim",
            },
        ],
        "routes": [],
        "resources": [],
    }


async def _restore_while_attacker_races(gateway: Ready, *, force: bool) -> list[dict[str, str]]:
    """Run the CLI's loader (`config load`) while the attacker does what a script polling its
    own (known) secret does: as soon as its token works again, claim the victim's hostname."""
    from cli.client import ApiClient
    from cli.commands.backup import load_backup

    def attacker_acts(row: dict[str, str]) -> None:
        if (row["kind"], row["name"], row["action"]) == ("token", "attacker", "created"):
            headers = {"Authorization": f"Bearer {ATTACKER_SECRET}"}
            with httpx.Client(base_url=gateway.api_url, headers=headers) as attacker:
                body = {**proxy(SHOP), "enable_http": False}
                assert attacker.post(TARGETS, json=body).status_code == 201

    def load() -> list[dict[str, str]]:
        with httpx.Client(base_url=gateway.api_url, timeout=30) as http:
            api = ApiClient(http, gateway.admin_token.secret)
            return load_backup(api, _restore_file(), force=force, on_record=attacker_acts)

    return await trio.to_thread.run_sync(load)


async def test_a_restore_gives_each_hostname_back_to_its_owner(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    """`config load` restores every token first, then the records, each as its owner: an owner
    whose token is back may claim another owner's hostname before the load reaches it. The
    load reported the victim's proxy as `skipped: exists` (it checked the hostname, not who
    holds it; nothing failed). It is now a failure that says the name is held by another
    token, so the admin sees it before `redis-accept` (docs/backup.md)."""
    rows = await _restore_while_attacker_races(gateway, force=False)
    shop = next(row for row in rows if (row["kind"], row["name"]) == ("proxy", SHOP))
    assert shop["action"] == "failed" and "held by another token" in shop["detail"], rows


async def test_a_forced_restore_hands_no_owner_another_owners_settings(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    """With `--force` it is silent: the attacker's proxy for the victim's hostname exists when
    the load lists proxies, so the victim's record was applied over it *as the admin* ("its
    owner stays"): the load reported `updated`, nothing failed, and the attacker then read the
    victim's configured headers (a backend API key) on what is its own proxy."""
    rows = await _restore_while_attacker_races(gateway, force=True)
    shop = next(row for row in rows if (row["kind"], row["name"]) == ("proxy", SHOP))
    assert shop["action"] == "failed", rows
    headers = {"Authorization": f"Bearer {ATTACKER_SECRET}"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as attacker:
        seen = await attacker.get(f"{TARGETS}{SHOP}")
    leaked = seen.status_code == 200 and "victim-backend-key" in seen.text
    assert not leaked, f"the attacker reads the victim's header: {seen.json()['custom_headers']}"


async def test_a_forced_rollback_hands_no_owner_another_owners_settings(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    """No race needed: the victim deletes its proxy after the backup (by mistake), the attacker
    claims the free hostname, the admin rolls back with `config load --force`. The victim's
    saved proxy is applied over the attacker's proxy (as the admin, owner kept): `updated`,
    nothing failed, and the attacker reads the victim's backend key and runs its auth settings."""
    from cli.client import ApiClient
    from cli.commands.backup import collect, load_backup

    for name, secret in (("victim", VICTIM_SECRET), ("attacker", ATTACKER_SECRET)):
        made = await api.post("/api/v1/tokens/", json={"name": name, "token": secret})
        assert made.status_code == 201, made.text
    victim = httpx.AsyncClient(
        base_url=gateway.api_url, headers={"Authorization": f"Bearer {VICTIM_SECRET}"}
    )
    attacker = httpx.AsyncClient(
        base_url=gateway.api_url, headers={"Authorization": f"Bearer {ATTACKER_SECRET}"}
    )
    async with victim, attacker:
        body = {**proxy(SHOP), "custom_headers": {"X-Api-Key": "victim-backend-key"}}
        assert (await victim.post(TARGETS, json=body)).status_code == 201

        def save_then(load: bool) -> object:
            with httpx.Client(base_url=gateway.api_url, timeout=30) as http:
                client = ApiClient(http, gateway.admin_token.secret)
                return load_backup(client, saved, force=True) if load else collect(client)

        saved = cast(dict[str, object], await trio.to_thread.run_sync(save_then, False))
        assert (await victim.delete(f"{TARGETS}{SHOP}")).status_code == 200
        assert (await attacker.post(TARGETS, json=proxy(SHOP))).status_code == 201
        rows = await trio.to_thread.run_sync(save_then, True)
        seen = await attacker.get(f"{TARGETS}{SHOP}")
    assert "victim-backend-key" not in seen.text, (
        f"the attacker reads {seen.json()['custom_headers']}; the load said {rows}"
    )
