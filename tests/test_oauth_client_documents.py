"""Client ID Metadata Documents: an https URL as client_id, served here from a loopback HTTPS
server with a test CA (OAUTH_CIMD_ALLOW_LOOPBACK lets the gateway fetch from loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trio
from quart import Response

from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests import document_server, oauth_helpers
from tests.document_server import DocumentServer
from tests.github_standin import GitHubStandIn
from tests.oauth_helpers import FlowClient, start_gateway
from tests.tls import TestPKI

github = oauth_helpers.github
pki = document_server.pki
documents = document_server.documents


@pytest.fixture
async def flow(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
    pki: TestPKI,
) -> AsyncIterator[FlowClient]:
    gateway: Ready = await start_gateway(
        nursery, make_settings, github, oauth_cimd_allow_loopback=True, oauth_ca_bundle=pki.ca_file
    )
    async with httpx.AsyncClient(base_url=gateway.api_url) as http:
        yield FlowClient(http)


async def test_code_flow_with_a_metadata_document_client(
    flow: FlowClient, documents: DocumentServer
) -> None:
    client_id = documents.publish("client.json")
    client = {"client_id": client_id}
    callback = await flow.through_github(await flow.start(client_id, code_challenge="x" * 43))
    page = await flow.http.get(callback.headers["location"])
    assert "Metadata Client" in page.text
    assert "published by <code>localhost</code>" in page.text
    assert "a program on this computer" in page.text

    body = await flow.tokens(client)
    assert body["access_token"] and body["refresh_token"]
    refreshed = await flow.token(
        client, grant_type="refresh_token", refresh_token=body["refresh_token"]
    )
    assert refreshed.status_code == 200, refreshed.text
    assert documents.fetches == 1, "the document is cached"


@pytest.mark.parametrize(
    ("name", "served", "problem"),
    [
        (
            "other-id.json",
            {"client_id": "https://elsewhere.example.com/c.json"},
            "client_id is not its URL",
        ),
        ("secret.json", {"client_secret": "s"}, "must not carry a client_secret"),
        (
            "confidential.json",
            {"token_endpoint_auth_method": "client_secret_basic"},
            "only public clients",
        ),
        ("unnamed.json", {"client_name": ""}, "has no client_name"),
        ("bad-redirect.json", {"redirect_uris": ["http://evil.example.com/cb"]}, "must use https"),
        ("big.json", {"padding": "x" * 6000}, "larger than 5 KiB"),
        (
            "moved.json",
            Response("", 302, {"Location": "https://example.com/c.json"}),
            "answered 302",
        ),
        ("html.json", Response("<html></html>", 200), "is not JSON"),
        ("missing.json", None, "answered 404"),
    ],
)
async def test_unusable_documents_are_refused_on_a_page(
    flow: FlowClient, documents: DocumentServer, name: str, served: Any, problem: str
) -> None:
    if isinstance(served, Response):
        documents.documents[name] = served
    elif served is not None:
        documents.publish(name, **served)
    response = await flow.start(documents.url(name), code_challenge="x" * 43)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert problem in response.text


async def test_a_redirect_uri_outside_the_document_is_refused(
    flow: FlowClient, documents: DocumentServer
) -> None:
    client_id = documents.publish("client.json")
    response = await flow.start(
        client_id, code_challenge="x" * 43, redirect_uri="http://127.0.0.1:8765/elsewhere"
    )
    assert response.status_code == 400
    assert "location" not in response.headers


@pytest.mark.parametrize(
    "client_id",
    [
        "https://localhost:1/",
        "https://localhost:1/a/../client.json",
        "https://user@localhost:1/client.json",
        "https://evil.example\uff3clocalhost:1/client.json",
    ],
)
async def test_unusable_client_id_urls(flow: FlowClient, client_id: str) -> None:
    response = await flow.start(client_id, code_challenge="x" * 43)
    assert response.status_code == 400
    assert "URL client_id must" in response.text


async def test_loopback_documents_are_refused_by_default(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
    documents: DocumentServer,
    pki: TestPKI,
) -> None:
    gateway = await start_gateway(nursery, make_settings, github, oauth_ca_bundle=pki.ca_file)
    client_id = documents.publish("client.json")
    async with httpx.AsyncClient(base_url=gateway.api_url) as http:
        response = await FlowClient(http).start(client_id, code_challenge="x" * 43)
    assert response.status_code == 400
    assert "resolves to an address that is not public" in response.text
    assert documents.fetches == 0


@pytest.mark.parametrize(
    "address",
    ["64:ff9b::a00:5", "64:ff9b:1::a00:5", "::a00:5", "2002:a00:5::1", "fec0::1", "2001:0::1"],
    ids=["nat64", "local-nat64", "ipv4-compatible", "6to4", "site-local", "teredo"],
)
async def test_a_document_host_is_not_an_internal_address_in_ipv6_clothes(
    flow: FlowClient, address: str
) -> None:
    """Anyone can make the gateway fetch a client metadata document. Its host must be public,
    and Python's `is_global` says so of IPv6 forms that stand for IPv4 addresses (NAT64
    64:ff9b::a00:5 is 10.0.0.5 on a DNS64/NAT64 network; IPv4-compatible, 6to4, Teredo) and of
    site-local fec0::/10: the gateway connected to them (a blind probe of internal hosts)."""
    response = await flow.start(f"https://[{address}]/client.json", code_challenge="x" * 43)
    assert response.status_code == 400, response.text
    assert "resolves to an address that is not public" in response.text
