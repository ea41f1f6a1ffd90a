from __future__ import annotations

import httpx


async def test_health_reports_redis(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["components"]["redis"]["status"] == "ok"
    assert body["components"]["redis"]["embedded"] is False


def test_the_package_exports_serve() -> None:
    import inspect

    import oauthproxy

    assert inspect.iscoroutinefunction(oauthproxy.serve)
    assert "task_status" in inspect.signature(oauthproxy.serve).parameters
