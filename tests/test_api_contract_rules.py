"""What the OpenAPI contract rests on, checked directly: the error statuses derived per route kind
(a pure table), the document's security and error answers, and two bugs the fuzzing found."""

from __future__ import annotations

import httpx
import pytest
import requests
import trio

from oauthproxy.api.contract import Access, error_statuses
from oauthproxy.serve import Ready

ANY_TOKEN, ADMIN = Access.OWNER, Access.ADMIN


@pytest.mark.parametrize(
    ("method", "access", "inputs", "expected"),
    [
        ("get", None, {}, {503}),
        ("get", ANY_TOKEN, {}, {401, 503}),
        ("get", ADMIN, {}, {401, 403, 503}),
        ("get", ANY_TOKEN, {"path_params": True}, {401, 404, 422, 503}),
        ("get", ANY_TOKEN, {"query": True}, {401, 422, 503}),
        ("delete", ANY_TOKEN, {"path_params": True}, {401, 403, 404, 409, 422, 503}),
        ("post", ANY_TOKEN, {"body": True}, {400, 401, 403, 404, 409, 413, 415, 422, 503}),
        ("put", ADMIN, {"path_params": True, "body": True}, {400, 401, 403, 404, 409, 413, 415, 422, 503}),  # noqa: E501
    ],
)  # fmt: skip
def test_error_statuses_follow_from_the_route_kind(
    method: str, access: Access | None, inputs: dict[str, bool], expected: set[int]
) -> None:
    given = {"path_params": False, "body": False, "query": False, **inputs}
    assert error_statuses(method, access, **given) == expected


async def test_the_document_says_who_may_call_and_every_error(
    anonymous: httpx.AsyncClient,
) -> None:
    document = (await anonymous.get("/api/v1/openapi.json")).json()
    paths = document["paths"]
    for public in ("/.well-known/oauth-authorization-server", "/authorize", "/callback", "/token"):
        for operation in paths[public].values():
            assert operation["security"] == [], public
    create = paths["/api/v1/proxy/targets/"]["post"]
    assert create["security"] == [{"bearer": []}]
    statuses = {"201", "400", "401", "403", "404", "409", "413", "415", "422", "503"}
    assert set(create["responses"]) == statuses
    error = create["responses"]["422"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}
    assert create["requestBody"]["required"] is True
    body = create["requestBody"]["content"]["application/json"]["schema"]
    hostname = body["properties"]["hostname"]
    assert hostname["pattern"].startswith("^[A-Za-z0-9]")


@pytest.mark.parametrize("body", ["", '{"hostname": ""}', '{"redirect_uris": [""]}'])
async def test_what_the_schema_forbids_the_api_refuses(api: httpx.AsyncClient, body: str) -> None:
    response = await api.post(
        "/api/v1/proxy/targets/", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (400, 422), response.text
    assert set(response.json()) >= {"error", "detail"}


async def test_not_utf8_json_is_a_400_with_the_error_body(api: httpx.AsyncClient) -> None:
    for path in ("/api/v1/tokens/", "/api/v1/certificates/"):
        response = await api.post(
            path, content=b'{"name": "\xff"}', headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_json"
        assert response.json()["field"] == "body"


async def test_answers_given_before_the_body_arrives_keep_the_connection_usable(
    gateway: Ready,
) -> None:
    """A 405 (or 401, 415) is decided from the head alone. When the body arrived after that
    answer, hypercorn dropped the keep-alive connection, and the client's next request on it was
    never answered. `requests` (schemathesis's client) sends the head and the body apart."""

    def on_one_connection() -> list[int]:
        with requests.Session() as session:
            return [
                session.request(
                    method,
                    f"{gateway.api_url}/api/v1/certificates/",
                    json={"cert_name": "c", "domain": "a.example.com"},
                    timeout=20,  # the bug: no answer ever came
                ).status_code
                for method in ("TRACE", "QUERY", "PUT", "PATCH", "PATCH", "PATCH", "PUT")
            ]

    assert await trio.to_thread.run_sync(on_one_connection) == [405] * 7


async def test_request_counts_for_part_of_an_hour(api: httpx.AsyncClient) -> None:
    """`hours=0.5` asked Redis for PFCOUNT of no keys: a 503 'Redis is not reachable'."""
    proxy = {"hostname": "half.example.com", "target_url": "http://127.0.0.1:9"}
    created = await api.post("/api/v1/proxy/targets/", json={**proxy, "enable_https": False})
    assert created.status_code == 201, created.text
    response = await api.get("/api/v1/logs/events", params={"hours": 0.5})
    assert response.status_code == 200, response.text
    assert [host["hostname"] for host in response.json()["hosts"]] == ["half.example.com"]
