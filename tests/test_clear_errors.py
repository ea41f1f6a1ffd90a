"""Each way a user can go wrong gets an answer in plain words that names the field, setting or
next step (issue 13): pinned on the wire, through a real gateway."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import pytest
import trio

from oauthproxy.serve import Ready
from tests.eventually import eventually

TARGETS = "/api/v1/proxy/targets/"


async def test_a_target_without_a_scheme_is_told_to_add_one(api: httpx.AsyncClient) -> None:
    body = {"hostname": "app.example.com", "target_url": "127.0.0.1:3000"}
    response = await api.post(TARGETS, json=body)
    assert response.status_code == 422
    assert response.json()["field"] == "target_url"
    assert response.json()["detail"] == (
        "target_url: the URL has no scheme: add http:// or https:// (e.g. http://127.0.0.1:3000)"
    )


async def test_a_form_body_is_told_the_api_takes_json(api: httpx.AsyncClient) -> None:
    body = {"hostname": "app.example.com", "target_url": "http://127.0.0.1:3000"}
    response = await api.post(TARGETS, data=body)
    assert response.status_code == 415
    assert response.json() == {
        "error": "unsupported_media_type",
        "detail": "the admin API takes a JSON object: send the body with Content-Type: "
        "application/json (this request's type is application/x-www-form-urlencoded)",
        "field": "body",
    }


async def test_a_json_body_that_is_no_object_says_so(api: httpx.AsyncClient) -> None:
    response = await api.post(TARGETS, json=["app.example.com"])
    assert response.status_code == 422
    assert response.json()["field"] == "body"
    assert "must be a JSON object" in response.json()["detail"]


async def test_a_body_that_is_not_utf8_is_a_400_not_a_500(api: httpx.AsyncClient) -> None:
    json_type = {"content-type": "application/json"}
    for path in (TARGETS, "/api/v1/tokens/", "/api/v1/certificates/"):
        response = await api.post(path, content=b'{"name": "\xff"}', headers=json_type)
        assert response.status_code == 400, path
        assert response.json() == {
            "error": "invalid_json",
            "detail": "the request body is not valid UTF-8 JSON (byte 10)",
            "field": "body",
        }


async def test_a_collection_path_without_its_slash_is_served(api: httpx.AsyncClient) -> None:
    body = {"hostname": "app.example.com", "target_url": "http://127.0.0.1:3000"}
    created = await api.post(TARGETS.rstrip("/"), json=body)
    assert created.status_code == 201, created.text
    listed = await api.get(TARGETS.rstrip("/"))
    assert listed.status_code == 200
    assert [proxy["hostname"] for proxy in listed.json()] == ["app.example.com"]


async def test_plain_http_to_an_https_only_proxy_says_so(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    body = {
        "hostname": "secure.example.com",
        "target_url": "http://127.0.0.1:3000",
        "enable_http": False,
    }
    assert (await api.post(TARGETS, json=body)).status_code == 201

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as public:

        async def refused() -> httpx.Response | None:
            answer = await public.get("/", headers={"host": "secure.example.com"})
            return answer if answer.json()["error"] != "unknown_host" else None

        answer = await eventually(refused, what="the proxy in the gateway's desired state")
    assert answer.status_code == 404
    assert answer.json() == {
        "error": "http_disabled",
        "detail": "'secure.example.com' is served over HTTPS only (enable_http is off), "
        "and it has no certificate yet",
    }


async def test_plain_http_to_a_disabled_proxy_says_so(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    body = {"hostname": "off.example.com", "target_url": "http://127.0.0.1:3000"}
    assert (await api.post(TARGETS, json=body)).status_code == 201
    disabled = await api.put(f"{TARGETS}off.example.com", json={"enabled": False})
    assert disabled.status_code == 200, disabled.text

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as public:

        async def refused() -> httpx.Response | None:
            answer = await public.get("/", headers={"host": "off.example.com"})
            return answer if answer.json()["error"] == "proxy_disabled" else None

        answer = await eventually(refused, what="the proxy disabled in the gateway")
    assert answer.status_code == 404
    assert answer.json()["detail"] == "the proxy for 'off.example.com' is disabled"


async def test_a_proxy_for_an_api_hostname_is_refused_with_the_setting_named(
    api: httpx.AsyncClient,
) -> None:
    body = {"hostname": "localhost", "target_url": "http://127.0.0.1:3000"}
    response = await api.post(TARGETS, json=body)
    assert response.status_code == 409
    assert response.json() == {
        "error": "hostname_reserved",
        "detail": "localhost is in API_HOSTNAMES: its requests on the public ports go to the "
        "admin API, so a proxy for it would never be used; choose another hostname, or remove "
        "it from API_HOSTNAMES",
        "field": "hostname",
    }


async def _handshake(gateway: Ready, name: str) -> ssl.SSLError:
    tcp = await trio.open_tcp_stream("127.0.0.1", gateway.https_port)
    stream = trio.SSLStream(tcp, ssl.create_default_context(), server_hostname=name)
    with trio.fail_after(10), pytest.raises(trio.BrokenResourceError) as caught:
        await stream.do_handshake()
    await trio.aclose_forcefully(stream)
    assert isinstance(caught.value.__cause__, ssl.SSLError)
    return caught.value.__cause__


async def test_https_to_a_name_without_a_certificate_is_refused_and_logged_with_why(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    body = {
        "hostname": "plain.example.com",
        "target_url": "http://127.0.0.1:3000",
        "enable_https": False,
    }
    assert (await api.post(TARGETS, json=body)).status_code == 201
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as public:

        async def running() -> bool:
            answer = await public.get("/", headers={"host": "plain.example.com"})
            return bool(answer.json().get("error") != "unknown_host")

        await eventually(running, what="plain.example.com served over HTTP")

    for name in ("plain.example.com", "nobody.example.com"):
        refused = await _handshake(gateway, name)
        assert "UNRECOGNIZED_NAME" in str(refused.reason)  # the client's alert names the cause

    async def events() -> dict[str, str] | None:
        response = await api.get("/api/v1/logs/search", params={"event": "tls.handshake_failed"})
        found: list[dict[str, Any]] = response.json()["logs"]
        reasons = [entry["gateway_reason"] for entry in found]
        return {r.partition(":")[0]: r for r in reasons} if len(reasons) == 2 else None

    reasons = await eventually(events, what="both handshakes logged")
    assert reasons == {
        "sni=plain.example.com": "sni=plain.example.com: refused (unrecognized_name): its proxy "
        "has no certificate (enable_https is off, or none is issued yet)",
        "sni=nobody.example.com": "sni=nobody.example.com: refused (unrecognized_name): "
        "no proxy for this name",
    }


@pytest.mark.parametrize(
    "nested", ["[" * 100_000 + "]" * 100_000, '{"a":' * 5_000 + "1" + "}" * 5_000]
)
async def test_a_json_body_nested_too_deeply_is_a_400_not_a_500(
    api: httpx.AsyncClient, anonymous: httpx.AsyncClient, nested: str
) -> None:
    """Python's JSON parser gives up on deep nesting with a RecursionError (not a ValueError),
    which reached the catch-all: a 500 and a stack trace in the log, from anyone, for 200 kB."""
    json_type = {"content-type": "application/json"}
    for client, path in ((api, TARGETS), (api, "/api/v1/tokens/"), (anonymous, "/register")):
        response = await client.post(path, content=nested, headers=json_type)
        assert response.status_code == 400, (path, response.text)
        assert response.json() == {
            "error": "invalid_json",
            "detail": "the request body nests JSON too deeply",
            "field": "body",
        }
