"""The web dashboard in a real headless Chromium, against a real gateway and a real backend.

The admin signs in, creates a proxy in the browser and sees it serve (a request through the
public port reaches the backend and shows in the live request log page), gives it a
certificate and sees its status, creates, edits and deletes a route, and signs out. Owners see
only their own records, as through the API.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import httpx
import trio
from playwright.sync_api import Page, expect

from oauthproxy.serve import Ready
from tests.backend import serve_backend
from tests.chromium import Traffic, in_chromium
from tests.eventually import eventually
from tests.tenants import owner

SHOP = "shop.example.com"
MARKER = "/echo/seen-from-the-dashboard-test"


def sign_in(page: Page, api_url: str, token: str) -> None:
    page.goto(f"{api_url}/dashboard/")
    page.fill("#token", token)
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("[data-page=proxies] h1")).to_have_text("Proxies")


def open_page(page: Page, name: str) -> None:
    page.click(f"#nav a[href='#{name}']")
    expect(page.locator(f"[data-page={name}] h1")).to_be_visible()


def submit(page: Page, name: str, fields: Mapping[str, str | bool], done: str) -> None:
    """Fill the form `name` (opening its panel when closed), submit it, await `done`."""
    form = page.locator(f"[data-form={name}]")
    if not form.is_visible():
        page.locator("details.panel", has=form).locator("summary").click()
    for field, value in fields.items():
        control = form.locator(f"[name={field}]")
        if isinstance(value, bool):
            control.set_checked(value)
        elif control.evaluate("node => node.tagName") == "SELECT":
            control.select_option(value)
        else:
            control.fill(value)
    form.locator("button[type=submit]").click()
    expect(form.locator(".message")).to_contain_text(done)


async def test_the_admin_runs_a_proxy_from_the_dashboard(
    gateway: Ready, api: httpx.AsyncClient, nursery: trio.Nursery, tmp_path: Path
) -> None:
    backend: int = await nursery.start(functools.partial(serve_backend, "shop"))
    target = f"http://127.0.0.1:{backend}"

    async def request_through_the_gateway() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:

            async def served() -> bool:
                response = await client.get(MARKER, headers={"Host": SHOP})
                return response.status_code == 200 and response.headers["x-backend"] == "shop"

            await eventually(served, what=f"{SHOP} served by the backend")

    def steps(page: Page, traffic: Traffic) -> None:
        sign_in(page, gateway.api_url, gateway.admin_token.secret)
        expect(page.locator("#who")).to_have_text("Signed in as admin (admin)")
        fields = {"hostname": SHOP, "target_url": target}
        submit(page, "proxy-create", fields, f"Created {SHOP}.")
        expect(page.locator(f"tr[data-key='{SHOP}']")).to_contain_text(f"{target}/")

        open_page(page, "logs")
        expect(page.locator("#log tbody tr").first).to_be_visible()  # the newest, then live
        trio.from_thread.run(request_through_the_gateway)
        seen = page.locator(f"#log tr[data-host='{SHOP}']", has_text=MARKER)
        expect(seen.first).to_contain_text("200")
        expect(seen.first).to_contain_text("HTTP/1.1")  # the protocol column

        open_page(page, "certificates")
        certificate = {"cert_name": "shop-cert", "domains": SHOP, "kind": "self-signed"}
        submit(page, "certificate-create", certificate, "Created shop-cert")
        expect(page.locator("tr[data-key='shop-cert']")).to_contain_text("active")
        expect(page.locator("tr[data-key='shop-cert']")).to_contain_text("days")

        open_page(page, "proxies")
        page.locator(f"tr[data-key='{SHOP}']").get_by_role("button", name="Edit").click()
        edits: dict[str, str | bool] = {"cert_name": "shop-cert", "enable_https": True}
        submit(page, "proxy-edit", edits, f"Saved {SHOP}.")
        expect(page.locator(f"tr[data-key='{SHOP}']")).to_contain_text("on shop-cert")
        sign_in_rule: dict[str, str | bool] = {
            "auth_enabled": True,
            "auth_mode": "redirect",
            "auth_required_users": "alice",
        }
        submit(page, "proxy-auth", sign_in_rule, f"Sign-in required on {SHOP}.")
        auth_cell = page.locator(f"tr[data-key='{SHOP}'] td").nth(4)
        expect(auth_cell.locator(".badge")).to_have_text("redirect")
        expect(auth_cell.locator(".hint")).to_have_text("alice")

    _, traffic = await in_chromium(tmp_path, gateway.api_url, steps)
    assert traffic.errors == []
    assert traffic.foreign() == []
    proxy = (await api.get(f"/api/v1/proxy/targets/{SHOP}")).json()
    assert (proxy["cert_name"], proxy["enable_https"]) == ("shop-cert", True)
    assert (proxy["auth_enabled"], proxy["auth_mode"]) == (True, "redirect")
    assert proxy["auth_required_users"] == ["alice"]


async def test_routes_are_created_edited_and_deleted_and_sign_out_forgets_the_token(
    gateway: Ready, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    created = await api.post(
        "/api/v1/proxy/targets/",
        json={"hostname": SHOP, "target_url": "http://127.0.0.1:9", "enable_https": False},
    )
    assert created.status_code == 201, created.text

    def steps(page: Page, traffic: Traffic) -> str:
        sign_in(page, gateway.api_url, gateway.admin_token.secret)
        open_page(page, "routes")
        route = {"path_pattern": "/shop/", "target_type": "hostname", "target_value": SHOP}
        submit(page, "route-create", route, "Created route ")
        message = page.locator("[data-form=route-create] .message").inner_text()
        route_id = message.removeprefix("Created route ").removesuffix(".")
        listed = page.locator(f"tr[data-key='{route_id}']")
        expect(listed).to_contain_text("/shop/")

        listed.get_by_role("button", name="Edit").click()
        submit(page, "route-edit", {"path_pattern": "/store/", "priority": "70"}, "Saved route")
        expect(listed).to_contain_text("/store/")
        expect(listed).to_contain_text("70")
        edited = trio.from_thread.run(api.get, f"/api/v1/routes/{route_id}")
        assert (edited.json()["path_pattern"], edited.json()["priority"]) == ("/store/", 70)

        listed.get_by_role("button", name="Delete").click()
        expect(listed).to_have_count(0)
        expect(page.locator("[data-page=routes] .content")).to_contain_text("No routes yet")

        page.click("#sign-out")
        expect(page.locator("#sign-in")).to_be_visible()
        expect(page.locator("#nav")).to_be_hidden()
        assert page.evaluate("sessionStorage.length") == 0
        page.reload()
        expect(page.locator("#sign-in")).to_be_visible()
        return route_id

    route_id, traffic = await in_chromium(tmp_path, gateway.api_url, steps)
    assert traffic.errors == []
    assert (await api.get(f"/api/v1/routes/{route_id}")).status_code == 404


async def logged_request(gateway: Ready, api: httpx.AsyncClient, host: str) -> None:
    """Send `host` a request through the public port once its proxy answers (its backend is
    closed: 502), and wait until the request log holds it."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as public:

        async def proxied() -> bool:
            return (await public.get("/", headers={"Host": host})).status_code == 502

        await eventually(proxied, what=f"{host} proxied")

    async def logged() -> bool:
        found = await api.get("/api/v1/logs/search", params={"hostname": host, "status": 502})
        return bool(found.json()["count"])

    await eventually(logged, what=f"a request to {host} in the log")


async def test_an_owner_sees_only_its_own_records(
    gateway: Ready, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with owner(api, gateway, "alice") as alice, owner(api, gateway, "bob") as bob:
        for client, host in ((alice, "alice.example.com"), (bob, "bob.example.com")):
            body = {"hostname": host, "target_url": "http://127.0.0.1:9", "enable_https": False}
            assert (await client.post("/api/v1/proxy/targets/", json=body)).status_code == 201
        route = {
            "path_pattern": "/bob/",
            "target_type": "hostname",
            "target_value": "bob.example.com",
            "scope": "proxy",
            "proxy_hostnames": ["bob.example.com"],
        }
        assert (await bob.post("/api/v1/routes/", json=route)).status_code == 201
        alice_token = alice.headers["Authorization"].removeprefix("Bearer ")
        bob_token = bob.headers["Authorization"].removeprefix("Bearer ")
    for host in ("alice.example.com", "bob.example.com"):
        await logged_request(gateway, api, host)

    def steps(page: Page, traffic: Traffic) -> None:
        page.goto(f"{gateway.api_url}/dashboard/")
        page.fill("#token", "acm_not-a-token-of-this-gateway")
        page.click("#sign-in-form button[type=submit]")
        expect(page.locator("#sign-in-error")).to_have_text("That token is not valid.")

        sign_in(page, gateway.api_url, alice_token)
        expect(page.locator("#who")).to_have_text("Signed in as alice (owner)")
        expect(page.locator("tr[data-key='alice.example.com']")).to_be_visible()
        expect(page.locator("tr[data-key='bob.example.com']")).to_have_count(0)
        expect(page.locator("#nav a[href='#tokens']")).to_be_hidden()
        open_page(page, "routes")
        expect(page.locator("[data-page=routes] .content")).to_contain_text("No routes yet")
        open_page(page, "logs")
        expect(page.locator("#log tr[data-host='alice.example.com']").first).to_be_visible()
        expect(page.locator("#log tr[data-host='bob.example.com']")).to_have_count(0)
        page.goto(f"{gateway.api_url}/dashboard/#tokens")  # an admin page: proxies instead
        expect(page.locator("[data-page=proxies] h1")).to_be_visible()
        page.click("#sign-out")

        sign_in(page, gateway.api_url, bob_token)
        expect(page.locator("tr[data-key='bob.example.com']")).to_be_visible()
        expect(page.locator("tr[data-key='alice.example.com']")).to_have_count(0)
        open_page(page, "routes")
        expect(page.locator("[data-page=routes] tbody tr")).to_have_count(1)
        expect(page.locator("[data-page=routes] tbody")).to_contain_text("/bob/")

    _, traffic = await in_chromium(tmp_path, gateway.api_url, steps)
    assert [error for error in traffic.errors if "401" not in error] == []


async def test_text_from_owners_and_strangers_is_shown_as_text_never_as_markup(
    gateway: Ready, api: httpx.AsyncClient, anonymous: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A route's description (an owner's text) and an OAuth client's name (anyone may register
    one, without a token) hold markup that would run a script if it were parsed as HTML."""
    markup = '<img src="/x" onerror="document.title=\'injected\'"><b>bold</b>'
    await api.post(
        "/api/v1/proxy/targets/",
        json={"hostname": SHOP, "target_url": "http://127.0.0.1:9", "enable_https": False},
    )
    route = {"path_pattern": "/x/", "target_type": "hostname", "target_value": SHOP}
    created = await api.post("/api/v1/routes/", json={**route, "description": markup})
    assert created.status_code == 201, created.text
    client = {"client_name": markup, "redirect_uris": ["http://127.0.0.1:9/callback"]}
    registered = await anonymous.post("/register", json=client)
    assert registered.status_code == 201, registered.text

    def steps(page: Page, traffic: Traffic) -> None:
        sign_in(page, gateway.api_url, gateway.admin_token.secret)
        for name in ("routes", "oauth"):
            open_page(page, name)
            shown = page.locator(f"[data-page={name}] tbody", has_text="bold").first
            expect(shown).to_contain_text(markup)
            expect(page.locator(f"[data-page={name}] img, [data-page={name}] b")).to_have_count(0)
        assert page.title() != "injected"

    await in_chromium(tmp_path, gateway.api_url, steps)


async def test_the_admin_makes_an_owner_token_that_then_signs_in(
    gateway: Ready, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    def steps(page: Page, traffic: Traffic) -> None:
        sign_in(page, gateway.api_url, gateway.admin_token.secret)
        not_a_url = {"hostname": SHOP, "target_url": "backend.internal"}
        submit(page, "proxy-create", not_a_url, "422: target_url: the URL has no scheme")

        open_page(page, "services")
        expect(page.locator("tr[data-key='api']")).to_contain_text("internal")
        open_page(page, "oauth")
        expect(page.locator("tr[data-key='oauthproxy-gateway']")).to_be_visible()
        expect(page.locator("[data-page=oauth]")).to_contain_text("No sessions")

        open_page(page, "tokens")
        token = {"name": "team-a", "github_users": "alice, Bob"}
        submit(page, "token-create", token, "Created team-a.")
        expect(page.locator("tr[data-key='team-a']")).to_contain_text("owner")
        expect(page.locator("tr[data-key='team-a']")).to_contain_text("alice, Bob")
        secret = page.locator(".token-secret").inner_text()
        page.click("#sign-out")

        sign_in(page, gateway.api_url, secret)
        expect(page.locator("#who")).to_have_text("Signed in as team-a (owner)")
        submit(
            page, "proxy-create", {"hostname": SHOP, "target_url": "http://127.0.0.1:9"}, "Created"
        )

    _, traffic = await in_chromium(tmp_path, gateway.api_url, steps)
    assert [error for error in traffic.errors if "422" not in error] == []
    proxy = (await api.get(f"/api/v1/proxy/targets/{SHOP}")).json()
    assert proxy["created_by"] == "team-a"


async def test_a_revealed_token_secret_is_not_kept_in_the_browsers_cache(
    gateway: Ready, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The admin reads an owner token's secret in the browser (Swagger UI's "Try it out" on
    `GET /api/v1/tokens/{name}/reveal` fetches with the default cache mode). The answer said
    nothing about caching, so Chromium kept it in its HTTP cache, on disk in the profile: the
    secret was read back later from the cache alone, without a token, after the token was
    deleted on the server (an attack hunt). The API's answers say `no-store` now."""
    secret = (await api.post("/api/v1/tokens/generate", json={"name": "bob"})).json()["token"]
    admin = gateway.admin_token.secret

    def reveal(page: Page, traffic: Traffic) -> str:
        page.goto(f"{gateway.api_url}/api/v1/docs")
        return str(
            page.evaluate(
                """async (admin) => {
                    const answer = await fetch('/api/v1/tokens/bob/reveal',
                        {headers: {Authorization: `Bearer ${admin}`}});
                    const first = (await answer.json()).token;
                    await fetch('/api/v1/tokens/bob', {method: 'DELETE',
                        headers: {Authorization: `Bearer ${admin}`}, cache: 'no-store'});
                    try {
                        const cached = await fetch('/api/v1/tokens/bob/reveal',
                            {cache: 'only-if-cached', mode: 'same-origin'});
                        return `${first} ${cached.status} ${await cached.text()}`;
                    } catch (error) {
                        return `${first} not cached`;
                    }
                }""",
                admin,
            )
        )

    shown, _ = await in_chromium(tmp_path, gateway.api_url, reveal)
    assert shown.startswith(secret), shown
    assert (await api.get("/api/v1/tokens/bob")).status_code == 404  # (deleted on the server)

    def holding_the_secret() -> list[str]:
        return [
            str(path.relative_to(tmp_path))
            for path in (tmp_path / "chromium-profile").rglob("*")
            if path.is_file() and secret.encode() in path.read_bytes()
        ]

    on_disk = await trio.to_thread.run_sync(holding_the_secret)
    assert (shown.removeprefix(secret), on_disk) == (" not cached", [])
    revealed = await api.get("/api/v1/tokens/")
    assert revealed.headers["cache-control"] == "no-store"
