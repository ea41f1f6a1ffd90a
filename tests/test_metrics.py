"""`GET /metrics` on the API port, parsed by prometheus_client's own parser: the counters match
the requests made; it takes the admin token; unknown hostnames do not become labels."""

from __future__ import annotations

import functools
from collections.abc import Callable

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.backend import serve_backend
from tests.conftest import free_port
from tests.eventually import eventually

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(gateway: Ready) -> Samples:
    headers = {"Authorization": f"Bearer {gateway.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def settled(gateway: Ready, public: httpx.AsyncClient) -> Samples:
    """The metrics once every earlier request is counted: a marker request to an unknown
    hostname is counted after them (batches are counted in order)."""
    others = requests_of(await scrape(gateway), "other", "4xx")
    await public.get("/", headers={"Host": "marker.example.com"})

    async def counted() -> Samples | None:
        samples = await scrape(gateway)
        return samples if requests_of(samples, "other", "4xx") > others else None

    return await eventually(counted, what="the marker request counted")


def requests_of(samples: Samples, host: str, status_class: str) -> float:
    key = ("oauthproxy_requests_total", (("host", host), ("status_class", status_class)))
    return samples.get(key, 0.0)


async def test_counters_match_the_requests_made(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    backend: int = await nursery.start(functools.partial(serve_backend, "metered"))
    for hostname, port in (("m.example.com", backend), ("dead.example.com", free_port())):
        await storage.proxies.create(
            ProxyTarget.model_validate(
                {"hostname": hostname, "target_url": f"http://127.0.0.1:{port}"}
            )
        )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as public:

        async def both_known() -> bool:
            for hostname in ("m.example.com", "dead.example.com"):
                if (await public.get("/echo", headers={"Host": hostname})).status_code == 404:
                    return False
            return True

        await eventually(both_known, what="m.example.com and dead.example.com known")
        before = await settled(gateway, public)
        for _ in range(3):
            assert (await public.get("/echo", headers={"Host": "m.example.com"})).status_code == 200
        for _ in range(2):
            response = await public.get("/status/503", headers={"Host": "m.example.com"})
            assert response.status_code == 503
        assert (await public.get("/", headers={"Host": "dead.example.com"})).status_code == 502
        for made_up in ("x1.example.com", "x2.example.com"):
            assert (await public.get("/", headers={"Host": made_up})).status_code == 404

    async def all_counted() -> Samples | None:
        samples = await scrape(gateway)
        made_up = requests_of(samples, "other", "4xx") - requests_of(before, "other", "4xx")
        return samples if made_up >= 2 else None

    after = await eventually(all_counted, what="the made-up hosts counted")
    assert (
        requests_of(after, "m.example.com", "2xx") - requests_of(before, "m.example.com", "2xx")
        == 3
    )
    assert (
        requests_of(after, "m.example.com", "5xx") - requests_of(before, "m.example.com", "5xx")
        == 2
    )
    failures = (
        "oauthproxy_upstream_failures_total",
        (("host", "dead.example.com"), ("kind", "error")),
    )
    assert after[failures] - before.get(failures, 0.0) == 1
    count = ("oauthproxy_request_duration_seconds_count", ())
    assert after[count] - before[count] == 8
    assert not any("x1.example.com" in str(key) for key in after)
    assert after[("oauthproxy_instances_running", ())] >= 2
    assert after[("oauthproxy_request_log_dropped", ())] == 0


async def test_metrics_take_the_admin_token(gateway: Ready) -> None:
    async with httpx.AsyncClient(base_url=gateway.api_url) as client:
        assert (await client.get("/metrics")).status_code == 401
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.json()["field"] == "Authorization"


async def test_metrics_off(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(metrics_enabled=False)
    ready: Ready = await nursery.start(
        lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
    )
    headers = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=ready.api_url, headers=headers) as client:
        response = await client.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"] == "metrics_disabled"


async def test_a_deleted_proxys_series_go(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, api: httpx.AsyncClient
) -> None:
    """Every hostname a proxy served kept its series for ever, so an owner could grow them
    without bound within its proxy quota (make a proxy, send a request, delete it, again): the
    memory of every replica and the size of every scrape. A deleted proxy's series go."""
    dead = free_port()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as public:
        for number in range(3):
            host = f"grow{number}.example.com"
            await storage.proxies.create(
                ProxyTarget.model_validate(
                    {"hostname": host, "target_url": f"http://127.0.0.1:{dead}"}
                )
            )

            async def counted(host: str = host) -> bool:
                await public.get("/", headers={"Host": host})
                samples = await scrape(gateway)
                return requests_of(samples, host, "5xx") > 0 and any(
                    ("host", host) in labels
                    for name, labels in samples
                    if name == "oauthproxy_upstream_failures_total"
                )

            await eventually(counted, what=f"{host} counted")
            assert (await api.delete(f"/api/v1/proxy/targets/{host}")).status_code == 200

            async def gone(host: str = host) -> bool:
                return (await public.get("/", headers={"Host": host})).status_code == 404

            await eventually(gone, what=f"{host} no longer served")
    samples = await scrape(gateway)
    assert not [labels for _, labels in samples if any("grow" in value for _, value in labels)]
