"""The API docs pages and the dashboard load everything from the gateway itself (no CDN), render
in a real Chromium, and are served with a policy that allows no script from anywhere else."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from oauthproxy.serve import Ready
from tests.chromium import Traffic, in_chromium

PAGES = ["/dashboard/", "/api/v1/docs", "/api/v1/redoc"]
ANY_URL = re.compile(r"(?:https?:)?//[\w.-]+", re.IGNORECASE)


@pytest.mark.parametrize("page", PAGES)
async def test_a_page_names_no_other_origin_and_forbids_scripts_from_one(
    anonymous: httpx.AsyncClient, page: str
) -> None:
    response = await anonymous.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert ANY_URL.findall(response.text) == []
    assert "<script>" not in response.text  # every script is a file of this origin
    header = response.headers["content-security-policy"]
    policy = dict(part.strip().split(" ", 1) for part in header.split(";"))
    assert policy["script-src"] == "'self'"
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_the_dashboard_allows_no_inline_style_either(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/dashboard/")
    assert "style-src 'self';" in response.headers["content-security-policy"] + ";"
    assert "unsafe" not in response.headers["content-security-policy"]


async def test_only_listed_assets_are_served(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/dashboard/vendor/redoc/redoc.standalone.js")).status_code == 200
    script = await anonymous.get("/dashboard/static/dashboard.js")
    assert script.headers["content-type"].startswith("text/javascript")
    for path in (
        "/dashboard/static/index.html.bak",
        "/dashboard/vendor/redoc/index.html",
        "/dashboard/vendor/swagger-ui/%2e%2e%2f__init__.py",
        "/dashboard/vendor/nothing/redoc.standalone.js",
    ):
        response = await anonymous.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"


async def test_the_root_leads_to_the_dashboard(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/")
    assert (response.status_code, response.headers["location"]) == (302, "/dashboard/")


async def test_swagger_ui_and_redoc_render_from_local_assets(
    gateway: Ready, tmp_path: Path
) -> None:
    def steps(page: Page, traffic: Traffic) -> None:
        page.goto(f"{gateway.api_url}/api/v1/docs")
        operation = page.locator(".opblock-summary-path", has_text="/api/v1/proxy/targets/")
        expect(operation.first).to_be_visible()
        expect(page.locator(".info .title")).to_contain_text("oauthproxy admin API")

        page.goto(f"{gateway.api_url}/api/v1/redoc")
        expect(page.locator("h1", has_text="oauthproxy admin API")).to_be_visible()
        summary = page.get_by_text("Create a proxy target owned by the calling token")
        expect(summary.first).to_be_attached()

    _, traffic = await in_chromium(tmp_path, gateway.api_url, steps)
    assert traffic.foreign() == []
    loaded = {url.removeprefix(gateway.api_url) for url in traffic.loaded}
    assert {
        "/dashboard/vendor/swagger-ui/swagger-ui-bundle.js",
        "/dashboard/vendor/swagger-ui/swagger-ui.css",
        "/dashboard/vendor/redoc/redoc.standalone.js",
        "/api/v1/openapi.json",
    } <= loaded
    # ReDoc's bundle names its logo on a CDN; the page's policy refuses it, so nothing leaves.
    assert [error for error in traffic.errors if "cdn.redoc.ly" not in error] == []


async def test_the_pages_are_not_operations_of_the_api_document(
    anonymous: httpx.AsyncClient,
) -> None:
    paths = (await anonymous.get("/api/v1/openapi.json")).json()["paths"]
    pages = [path for path in paths if path.startswith("/dashboard") or path in ("/", *PAGES)]
    assert pages == []
