"""`config load` writes a record over one that exists under its name only when that record is
still the file owner's: a name freed after the backup and claimed since by another owner (or
claimed while a restore runs, by an owner whose token came back first) is that owner's now, and
the file's record, written over it as the admin, would hand it the settings of the file's owner
(a configured header carrying a backend's API key, auth settings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import httpx
import trio

from oauthproxy.serve import Ready
from oauthproxy.storage.tokens import hash_secret
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


@dataclass
class Race:
    """What the load said, and what the gateway answered the attacker during it."""

    rows: list[dict[str, str]]
    answers: list[httpx.Response] = field(default_factory=list)

    def row(self, kind: str, name: str) -> dict[str, str]:
        return next(row for row in self.rows if (row["kind"], row["name"]) == (kind, name))


async def _restore_while_attacker_races(gateway: Ready, *, force: bool) -> Race:
    """Run the CLI's loader (`config load`) while the attacker does what a script polling its
    own (known) secret does: as soon as its token exists again, claim the victim's hostname
    (and, once the load is past it, try once more)."""
    from cli.client import ApiClient
    from cli.commands.backup import load_backup

    race = Race(rows=[])
    attempts = {("token", "attacker", "created"), ("token", "victim", "created")}

    def attacker_acts(row: dict[str, str]) -> None:
        if (row["kind"], row["name"], row["action"]) in attempts:
            headers = {"Authorization": f"Bearer {ATTACKER_SECRET}"}
            with httpx.Client(base_url=gateway.api_url, headers=headers) as attacker:
                body = {**proxy(SHOP), "enable_http": False}
                race.answers.append(attacker.post(TARGETS, json=body))

    def load() -> list[dict[str, str]]:
        with httpx.Client(base_url=gateway.api_url, timeout=30) as http:
            api = ApiClient(http, gateway.admin_token.secret)
            return load_backup(api, _restore_file(), force=force, on_record=attacker_acts)

    race.rows = await trio.to_thread.run_sync(load)
    return race


async def _owner_of(api: httpx.AsyncClient, hostname: str) -> str:
    found = await api.get(f"{TARGETS}{hostname}")
    assert found.status_code == 200, found.text
    return cast(str, found.json()["owner_token_hash"])


async def test_a_restore_gives_each_hostname_back_to_its_owner(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    """`config load` restores every token first, then the records, each as its owner: an owner
    whose token was back could claim another owner's hostname before the load reached it (the
    load then said `skipped: exists`, later `failed: held by another token`, and the victim had
    lost its name). A token a load restores now authenticates only once the load has replayed
    every record: the attacker's claim during the load is refused (401 `token_suspended`), the
    victim's proxy is `created` as the victim's, and both tokens work once the load is done."""
    race = await _restore_while_attacker_races(gateway, force=False)
    assert race.row("proxy", SHOP)["action"] == "created", race.rows
    assert race.answers, "the attacker never tried"
    for answer in race.answers:
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "token_suspended", answer.text
    assert await _owner_of(api, SHOP) == hash_secret(VICTIM_SECRET)
    assert await _owner_of(api, "own.example.com") == hash_secret(ATTACKER_SECRET)
    for secret in (ATTACKER_SECRET, VICTIM_SECRET):
        headers = {"Authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as owner:
            info = await owner.get("/api/v1/tokens/info")
        assert info.status_code == 200, info.text
        assert info.json()["suspended"] is None, info.text


async def test_a_forced_restore_hands_no_owner_another_owners_settings(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    """With `--force` the race was silent: the attacker's proxy for the victim's hostname
    existed when the load listed proxies, so the victim's record was applied over it *as the
    admin* ("its owner stays"), and the attacker then read the victim's configured headers (a
    backend API key) on what was its own proxy. The attacker cannot claim the name at all now."""
    race = await _restore_while_attacker_races(gateway, force=True)
    assert race.row("proxy", SHOP)["action"] == "created", race.rows
    assert all(answer.status_code == 401 for answer in race.answers), race.answers
    assert await _owner_of(api, SHOP) == hash_secret(VICTIM_SECRET)
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


# --- a load that does not end: the tokens it restored are not left unusable ---------------------


class Interrupted(Exception):
    """What stops the load midway here (Ctrl-C, a gateway gone, a bug: the loader cannot tell)."""


async def _token_states(api: httpx.AsyncClient) -> dict[str, str | None]:
    return {
        token["name"]: token["suspended"] for token in (await api.get("/api/v1/tokens/")).json()
    }


async def test_an_interrupted_load_resumes_the_tokens_it_restored(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    """The load stops after the tokens, before any proxy: they were created suspended, and are
    resumed on the way out (the load's `finally`), so no token is left unusable."""
    from cli.client import ApiClient
    from cli.commands.backup import load_backup

    seen: list[dict[str, str | None]] = []

    def stop_at_proxies(row: dict[str, str]) -> None:
        if row["kind"] == "proxy":
            raise Interrupted

    def load() -> None:
        with httpx.Client(base_url=gateway.api_url, timeout=30) as http:
            api = ApiClient(http, gateway.admin_token.secret)
            try:
                load_backup(api, _restore_file(), force=False, on_record=stop_at_proxies)
            except Interrupted:
                seen.append({"interrupted": "yes"})

    async with httpx.AsyncClient(
        base_url=gateway.api_url, headers={"Authorization": f"Bearer {VICTIM_SECRET}"}
    ) as victim:
        await trio.to_thread.run_sync(load)
        assert seen == [{"interrupted": "yes"}]
        assert await _token_states(api) == {"admin": None, "attacker": None, "victim": None}
        assert (await victim.get("/api/v1/tokens/info")).status_code == 200


async def test_loading_again_resumes_what_a_killed_load_left_suspended(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    """A load killed outright (no `finally`) leaves its tokens suspended with the load's reason,
    which says the way out: loading the file again finds them (same secrets), replays the
    records as them and resumes them at its end; the admin token works throughout."""
    from cli.client import ApiClient
    from cli.commands.backup import RESTORING, load_backup

    for name, secret in (("victim", VICTIM_SECRET), ("attacker", ATTACKER_SECRET)):
        made = await api.post(
            "/api/v1/tokens/", json={"name": name, "token": secret, "suspended": RESTORING}
        )
        assert made.status_code == 201, made.text
    headers = {"Authorization": f"Bearer {VICTIM_SECRET}"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as victim:
        refused = await victim.get("/api/v1/tokens/info")
        assert refused.json()["error"] == "token_suspended", refused.text
        assert "load the file again" in refused.json()["detail"]

        def load() -> list[dict[str, str]]:
            with httpx.Client(base_url=gateway.api_url, timeout=30) as http:
                client = ApiClient(http, gateway.admin_token.secret)
                return load_backup(client, _restore_file(), force=False)

        rows = await trio.to_thread.run_sync(load)
        assert [row["action"] for row in rows] == ["skipped", "skipped", "created", "created"]
        assert await _token_states(api) == {"admin": None, "attacker": None, "victim": None}
        assert (await victim.get(f"{TARGETS}{SHOP}")).status_code == 200
    assert await _owner_of(api, SHOP) == hash_secret(VICTIM_SECRET)


async def test_a_suspension_the_admin_sets_during_a_load_survives_the_loads_resume(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    """The admin restores a backup; while the load runs it learns that one restored token has
    leaked and suspends it (`token suspend victim --reason leaked`). The load's `finally`
    resumed every token it restored with an unconditional DELETE /tokens/{name}/suspended: the
    admin's suspension was wiped and the leaked secret worked again, silently. The load resumes
    only a token still suspended with its own reason, and says which it left suspended."""
    from cli.client import ApiClient
    from cli.commands.backup import load_backup

    def admin_suspends(row: dict[str, str]) -> None:
        if (row["kind"], row["name"], row["action"]) == ("token", "victim", "created"):
            done = httpx.put(
                f"{gateway.api_url}/api/v1/tokens/victim/suspended",
                headers={"Authorization": f"Bearer {gateway.admin_token.secret}"},
                json={"reason": "leaked"},
            )
            assert done.status_code == 200, done.text

    def load() -> list[dict[str, str]]:
        with httpx.Client(base_url=gateway.api_url, timeout=30) as http:
            client = ApiClient(http, gateway.admin_token.secret)
            return load_backup(client, _restore_file(), force=False, on_record=admin_suspends)

    rows = await trio.to_thread.run_sync(load)
    assert await _token_states(api) == {"admin": None, "attacker": None, "victim": "leaked"}
    headers = {"Authorization": f"Bearer {VICTIM_SECRET}"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as thief:
        assert (await thief.get("/api/v1/tokens/info")).status_code == 401
    left = [row for row in rows if row["detail"].startswith("left suspended")]
    assert left == [
        {
            "kind": "token",
            "name": "victim",
            "action": "skipped",
            "detail": "left suspended: suspended since the load began (leaked)",
        }
    ], rows


async def test_a_second_load_takes_over_the_first_loads_suspension(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    """Two loads overlap: the second finds the tokens the first suspended and replays records
    as them. The first, ending, resumed them all (one reason for every load) while the second
    still ran: its protection ended early. The second takes the suspensions over (each load
    has its own reason); the first leaves them to it, and the second resumes them."""
    from cli.client import ApiClient
    from cli.commands.backup import Loader, load_backup

    tokens = cast(list[dict[str, str]], _restore_file()["tokens"])
    during: list[dict[str, str | None]] = []
    rows: list[dict[str, str]] = []

    def states(admin: ApiClient) -> dict[str, str | None]:
        return {token["name"]: token["suspended"] for token in admin.get("/api/v1/tokens/")}

    def overlap() -> Loader:
        with httpx.Client(base_url=gateway.api_url, timeout=30) as http:
            admin = ApiClient(http, gateway.admin_token.secret)
            first = Loader(admin, False, "admin")
            first.tokens(tokens)
            during.append(states(admin))

            def first_ends(row: dict[str, str]) -> None:
                if (row["kind"], row["name"]) == ("proxy", "own.example.com"):
                    first.resume()  # the first load ends while the second replays records
                    during.append(states(admin))

            rows.extend(load_backup(admin, _restore_file(), force=False, on_record=first_ends))
            return first

    first = await trio.to_thread.run_sync(overlap)
    assert during[0] == {"admin": None, "attacker": first.reason, "victim": first.reason}
    second = during[1]["victim"]
    assert second not in {None, first.reason} and during[1]["attacker"] == second, during
    assert [row["action"] for row in first.rows] == ["created", "created", "skipped", "skipped"]
    assert all("another `config load` holds it" in row["detail"] for row in first.rows[2:])
    assert [row["action"] for row in rows] == ["skipped", "skipped", "created", "created"]
    assert await _token_states(api) == {"admin": None, "attacker": None, "victim": None}
