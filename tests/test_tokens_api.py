"""The token endpoints over real HTTP against a real gateway and a real Redis."""

from __future__ import annotations

import logging

import httpx
import pytest
import trio

from oauthproxy.serve import Ready
from oauthproxy.storage import Storage

TOKENS = "/api/v1/tokens/"


async def _generate(api: httpx.AsyncClient, name: str, email: str | None = None) -> str:
    body = {"name": name} if email is None else {"name": name, "cert_email": email}
    response = await api.post(f"{TOKENS}generate", json=body)
    assert response.status_code == 201, response.text
    secret: str = response.json()["token"]
    return secret


def _as(gateway: Ready, secret: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=gateway.api_url, headers={"Authorization": f"Bearer {secret}"}
    )


async def test_generate_list_show_reveal(api: httpx.AsyncClient) -> None:
    secret = await _generate(api, "dev", "dev@example.com")
    assert secret.startswith("acm_") and len(secret) > 40

    listed = (await api.get(TOKENS)).json()
    assert [t["name"] for t in listed] == ["admin", "dev"]
    assert all("token" not in t for t in listed)

    shown = (await api.get(f"{TOKENS}dev")).json()
    assert shown["cert_email"] == "dev@example.com"
    assert shown["created_by"] == "admin"
    assert "token" not in shown

    revealed = (await api.get(f"{TOKENS}dev/reveal")).json()
    assert revealed["token"] == secret


async def test_create_with_own_secret_and_conflicts(api: httpx.AsyncClient) -> None:
    secret = "my-own-secret-value-that-is-long-enough-123"
    created = await api.post(TOKENS, json={"name": "ci", "token": secret})
    assert created.status_code == 201
    assert created.json()["token"] == secret

    again = await api.post(TOKENS, json={"name": "ci"})
    assert again.status_code == 409
    assert again.json()["field"] == "name"

    reused = await api.post(TOKENS, json={"name": "other", "token": secret})
    assert reused.status_code == 409
    assert reused.json()["field"] == "token"


async def test_token_sees_itself_but_not_others(api: httpx.AsyncClient, gateway: Ready) -> None:
    secret = await _generate(api, "alice")
    await _generate(api, "bob")
    async with _as(gateway, secret) as alice:
        info = (await alice.get(f"{TOKENS}info")).json()
        assert info["name"] == "alice" and info["is_admin"] is False
        assert [t["name"] for t in (await alice.get(TOKENS)).json()] == ["alice"]
        assert (await alice.get(f"{TOKENS}alice/reveal")).json()["token"] == secret
        for response in (
            await alice.post(f"{TOKENS}generate", json={"name": "mallory"}),
            await alice.delete(f"{TOKENS}bob"),
        ):
            assert response.status_code == 403, response.text
            assert response.json()["error"] == "forbidden"


async def test_another_tokens_record_reads_as_a_missing_one(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    """The tenant model: an owner cannot tell another owner's token from no token at all."""
    secret = await _generate(api, "alice")
    await _generate(api, "bob")
    async with _as(gateway, secret) as alice:
        for name in ("bob", "nobody"):
            answers = [
                await alice.get(f"{TOKENS}{name}"),
                await alice.get(f"{TOKENS}{name}/reveal"),
                await alice.put(f"{TOKENS}email", json={"name": name, "cert_email": "x@a.example"}),
            ]
            for response in answers:
                assert response.status_code == 404, response.text
                assert response.json() == {
                    "error": "not_found",
                    "detail": f"token {name!r} not found",
                    "field": "token",
                }
    assert (await api.get(f"{TOKENS}bob")).json()["cert_email"] != "x@a.example"


async def test_update_email_of_own_and_named_token(api: httpx.AsyncClient, gateway: Ready) -> None:
    secret = await _generate(api, "carol")
    async with _as(gateway, secret) as carol:
        own = await carol.put(f"{TOKENS}email", json={"cert_email": "carol@example.com"})
        assert own.status_code == 200
        assert own.json()["cert_email"] == "carol@example.com"
    named = await api.put(f"{TOKENS}email", json={"name": "carol", "cert_email": "c@example.org"})
    assert named.json()["cert_email"] == "c@example.org"
    missing = await api.put(
        f"{TOKENS}email", json={"name": "nobody", "cert_email": "n@example.org"}
    )
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "a bearer token is required"),
        ({"Authorization": "Bearer"}, "expected 'Authorization: Bearer <token>'"),
        ({"Authorization": "Basic YWRtaW46YWRtaW4="}, "expected 'Authorization: Bearer <token>'"),
        ({"Authorization": "Bearer acm_not-a-real-token"}, "the bearer token is not valid"),
    ],
)
async def test_bad_credentials_get_401_with_challenge(
    gateway: Ready, headers: dict[str, str], detail: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as client:
        for response in (
            await client.get(TOKENS),
            await client.post(f"{TOKENS}generate", json={"name": "x"}),
        ):
            assert response.status_code == 401
            assert response.json() == {
                "error": "unauthorized",
                "detail": detail,
                "field": "Authorization",
            }
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_deleted_token_is_refused_at_once(api: httpx.AsyncClient, gateway: Ready) -> None:
    secret = await _generate(api, "temp")
    async with _as(gateway, secret) as temp:
        assert (await temp.get(f"{TOKENS}info")).status_code == 200
        assert (await api.delete(f"{TOKENS}temp")).status_code == 200
        refused = await temp.get(f"{TOKENS}info")
        assert refused.status_code == 401
    assert (await api.get(f"{TOKENS}temp")).status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ({"name": 5}, "name", "Input should be a valid string"),
        ({"name": "has space"}, "name", "expected a name of letters, digits"),
        ({}, "name", "Field required"),
        ({"name": "ok", "cert_email": "not-an-email"}, "cert_email", "expected an email"),
        ({"name": "ok", "token": "short"}, "token", "at least 32 characters"),
        ({"name": "ok", "colour": "blue"}, "colour", "unknown field"),
    ],
)
async def test_wrong_types_name_the_field(
    api: httpx.AsyncClient, body: dict[str, object], field: str, problem: str
) -> None:
    response = await api.post(TOKENS, json=body)
    assert response.status_code == 422
    payload = response.json()
    assert payload["error"] == "validation_error"
    assert payload["field"] == field
    assert problem in payload["errors"][0]["problem"]


@pytest.mark.parametrize("raw", [b'{"name": ', b"not json at all", b"[1, 2"])
async def test_malformed_json_is_a_400_naming_the_body(api: httpx.AsyncClient, raw: bytes) -> None:
    response = await api.post(
        f"{TOKENS}generate", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_json",
        "detail": "the request body is not valid JSON",
        "field": "body",
    }


async def test_unknown_paths_and_methods_answer_json(api: httpx.AsyncClient) -> None:
    missing = await api.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong_method = await api.patch(f"{TOKENS}admin")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"


async def test_admin_token_cannot_delete_itself(api: httpx.AsyncClient) -> None:
    response = await api.delete(f"{TOKENS}admin")
    assert response.status_code == 409
    assert (await api.get(f"{TOKENS}info")).status_code == 200


async def test_secrets_never_reach_the_log(
    api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = await _generate(api, "quiet")
    await api.get(f"{TOKENS}quiet/reveal")
    await api.get(TOKENS, headers={"Authorization": f"Bearer {secret}"})
    await api.get(TOKENS, headers={"Authorization": "Bearer acm_wrong-secret-for-the-log"})
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert secret not in logged
    assert api.headers["Authorization"].removeprefix("Bearer ") not in logged
    assert "acm_wrong-secret-for-the-log" not in logged


async def test_openapi_document_lists_the_token_endpoints(anonymous: httpx.AsyncClient) -> None:
    document = (await anonymous.get("/api/v1/openapi.json")).json()
    paths = document["paths"]
    for path in (TOKENS, f"{TOKENS}generate", f"{TOKENS}email", f"{TOKENS}{{name}}/reveal"):
        assert path in paths, sorted(paths)
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    docs = await anonymous.get("/api/v1/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_admin_token_comes_from_the_environment(
    nursery: object, storage: Storage, make_settings: object
) -> None:
    import trio

    from oauthproxy.serve import serve
    from oauthproxy.settings import Settings

    assert isinstance(nursery, trio.Nursery)
    chosen = "env-admin-token-0123456789-abcdefghijklmnop"
    settings: Settings = make_settings(admin_token=chosen)  # type: ignore[operator]
    ready: Ready = await nursery.start(
        lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
    )
    async with _as(ready, chosen) as admin:
        info = (await admin.get(f"{TOKENS}info")).json()
    assert info["name"] == "admin" and info["is_admin"] is True
    assert (await storage.tokens.authenticate(chosen)) is not None


async def test_an_email_update_cannot_undo_a_github_login_removal(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    """An owner's `PUT /tokens/email` read the record and wrote it back whole: the admin's
    `PUT /tokens/{name}/github-users` landing in between was undone, and a GitHub login the
    admin had taken off the token (a colleague who left) could sign in as it again."""
    created = await api.post(
        "/api/v1/tokens/generate", json={"name": "racer", "github_users": ["leaver"]}
    )
    assert created.status_code == 201, created.text
    owner_headers = {"Authorization": f"Bearer {created.json()['token']}"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=owner_headers) as owner:
        for _ in range(15):
            started, stop = trio.Event(), trio.Event()

            async def update_email(started: trio.Event = started, stop: trio.Event = stop) -> None:
                while not stop.is_set():
                    body = {"cert_email": "me@example.com"}
                    answer = await owner.put("/api/v1/tokens/email", json=body)
                    assert answer.status_code == 200, answer.text
                    started.set()

            async with trio.open_nursery() as updates:
                for _ in range(8):
                    updates.start_soon(update_email)
                await started.wait()
                removed = await api.put(
                    "/api/v1/tokens/racer/github-users", json={"github_users": []}
                )
                assert removed.status_code == 200, removed.text
                stop.set()
            assert (await api.get("/api/v1/tokens/racer")).json()["github_users"] == []
            back = await api.put(
                "/api/v1/tokens/racer/github-users", json={"github_users": ["leaver"]}
            )
            assert back.status_code == 200, back.text
