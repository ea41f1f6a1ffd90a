"""What one owner's changes make the supervisor rebuild: only the instances they concern."""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable

import httpx

from oauthproxy.serve import Ready
from oauthproxy.supervisor.reconciler import Reconciler
from tests.eventually import eventually
from tests.test_proxies_api import TARGETS, as_new_token

VICTIMS = 10


def reconciler_of(gateway: Ready) -> Reconciler:
    """The running gateway's reconciler (serve keeps it to itself: read here, never changed)."""
    [found] = [
        each
        for each in gc.get_objects()
        if isinstance(each, Reconciler) and each.ports.http == gateway.http_port
    ]
    return found


def proxy(hostname: str) -> dict[str, object]:
    return {"hostname": hostname, "target_url": "http://127.0.0.1:3000", "enable_https": False}


async def _victims(api: httpx.AsyncClient, gateway: Ready) -> list[str]:
    victims = [f"victim-{n}.example.com" for n in range(VICTIMS)]
    for hostname in victims:
        assert (await api.post(TARGETS, json=proxy(hostname))).status_code == 201
    reconciler = reconciler_of(gateway)

    async def all_running() -> bool:
        return all(hostname in reconciler.instances for hostname in victims)

    await eventually(all_running, what="the victims running")
    return victims


async def test_one_owners_proxy_changes_rebuild_no_other_tenants_instances(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    """With any route of target type `hostname` anywhere, every batch naming a hostname rebuilt
    every running instance of every tenant (~0.4 ms each, on the loop that serves them): one
    owner making and deleting proxies kept the gateway busy rebuilding everyone's. Only the
    instances routing to a changed proxy are rebuilt now."""
    victims = await _victims(api, gateway)
    reconciler = reconciler_of(gateway)
    async with as_new_token(api, gateway, "churner") as owner:
        assert (await owner.post(TARGETS, json=proxy("own.example.com"))).status_code == 201
        loop = {
            "route_id": "loop", "path_pattern": "/loop/", "target_type": "hostname",
            "target_value": "own.example.com", "scope": "proxy",
            "proxy_hostnames": ["own.example.com"],
        }  # fmt: skip
        assert (await owner.post("/api/v1/routes/", json=loop)).status_code == 201

        async def routed() -> bool:
            config = reconciler.instances["own.example.com"].config
            return config is not None and [r.route_id for r in config.routes.routes] == ["loop"]

        await eventually(routed, what="the owner's route in its instance")
        before = {hostname: reconciler.instances[hostname].config for hostname in victims}
        for n in range(3):
            churned = f"churn-{n}.example.com"
            assert (await owner.post(TARGETS, json=proxy(churned))).status_code == 201
            assert (await owner.delete(f"{TARGETS}{churned}")).status_code == 200
        # and a change to the proxy the route sends to: only the owner's instance is rebuilt
        changed = await owner.put(f"{TARGETS}own.example.com", json={"enable_http": True})
        assert changed.status_code == 200, changed.text
        assert (await owner.post(TARGETS, json=proxy("sentinel.example.com"))).status_code == 201

        async def sentinel_running() -> bool:
            return "sentinel.example.com" in reconciler.instances

        await eventually(sentinel_running, what="the sentinel running")
    rebuilt = [h for h in victims if reconciler.instances[h].config is not before[h]]
    assert rebuilt == []


async def test_one_owners_route_and_service_changes_rebuild_no_other_tenants_instances(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    """Every route change and every service change rebuilt every running instance of every
    tenant (each walking every route): at 500 instances, one owner churning its own routes
    held the loop they all share a third of a second per change. A proxy-scoped route now
    rebuilds the proxies it names, a service the instances routing to it."""
    victims = await _victims(api, gateway)
    reconciler = reconciler_of(gateway)
    async with as_new_token(api, gateway, "churner") as owner:
        assert (await owner.post(TARGETS, json=proxy("own.example.com"))).status_code == 201

        async def own_running() -> bool:
            return "own.example.com" in reconciler.instances

        await eventually(own_running, what="the owner's proxy running")
        before = {hostname: reconciler.instances[hostname].config for hostname in victims}
        for n in range(3):
            route = {"route_id": f"churn-{n}", "path_pattern": f"/churn-{n}/",
                     "target_type": "url", "target_value": "http://127.0.0.1:3000",
                     "scope": "proxy", "proxy_hostnames": ["own.example.com"]}  # fmt: skip
            assert (await owner.post("/api/v1/routes/", json=route)).status_code == 201
            assert (await owner.delete(f"/api/v1/routes/churn-{n}")).status_code == 200
            service = {"service_name": f"churn-{n}", "target_url": "http://127.0.0.1:3000"}
            assert (await owner.post("/api/v1/services/external", json=service)).status_code == 201
            assert (await owner.delete(f"/api/v1/services/external/churn-{n}")).status_code == 200
        service = {"service_name": "kept-svc", "target_url": "http://127.0.0.1:3001"}
        assert (await owner.post("/api/v1/services/external", json=service)).status_code == 201
        kept = {"route_id": "kept", "path_pattern": "/kept/", "target_type": "service",
                "target_value": "kept-svc", "scope": "proxy",
                "proxy_hostnames": ["own.example.com"]}  # fmt: skip
        assert (await owner.post("/api/v1/routes/", json=kept)).status_code == 201

        def routed_to(url: str) -> Callable[[], Awaitable[bool]]:
            async def routed() -> bool:
                config = reconciler.instances["own.example.com"].config
                found = config.destination("/kept/x", "GET") if config is not None else None
                return found is not None and found.upstream == url

            return routed

        await eventually(routed_to("http://127.0.0.1:3001"), what="the owner's route")
        moved = {"target_url": "http://127.0.0.1:3002"}  # the instance routing to it follows
        assert (await owner.put("/api/v1/services/external/kept-svc", json=moved)).is_success
        await eventually(routed_to("http://127.0.0.1:3002"), what="the service's new URL")
    rebuilt = [h for h in victims if reconciler.instances[h].config is not before[h]]
    assert rebuilt == [], f"another owner's route and service changes rebuilt {rebuilt}"
