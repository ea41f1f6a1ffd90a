"""`GET /health`: is every subsystem working? 200 when it is, 503 when one is not.

Besides Redis answering, the gateway must be serving (not still starting) and Redis must still
hold what it serves (no data loss): each problem is named under `problems` with its reason. The
Docker engine is reported under `components.docker` (ok, or unavailable: naming DOCKER_HOST and
the engine's reason to the admin token only) but never makes the gateway unhealthy: only the
Docker service endpoints need it. With WORKERS above 1, `components.workers` counts the worker
processes (`restarting` while one is started again, which does not make the gateway unhealthy
either: the others serve)."""

from __future__ import annotations

from typing import Any

import trio
from quart import Blueprint, current_app, request

from oauthproxy import __version__
from oauthproxy.api import public_answers
from oauthproxy.api.auth import authenticate
from oauthproxy.api.contract import answers
from oauthproxy.api.errors import ApiError
from oauthproxy.api.state import app_state
from oauthproxy.errors import StorageUnavailable
from oauthproxy.models.certificates import CertificateSummary
from oauthproxy.models.common import utcnow
from oauthproxy.services.docker import EngineError, EngineUnavailable

health = Blueprint("health", __name__)

PING_TIMEOUT_SECONDS = 2.0

PUBLIC_PROBLEMS = {
    "data_loss": "Redis lost the data this gateway serves: the operator must restore it and "
    "accept (the admin token sees the details)",
}
"""What a caller without the admin token reads of a problem whose reason names the host's
files (the data dir's epoch file) or the epochs."""


async def _redis_health() -> dict[str, Any]:
    state = app_state(current_app)
    try:
        with trio.fail_after(PING_TIMEOUT_SECONDS):
            latency = await state.storage.ping()
            info = await state.storage.server_info()
    except (StorageUnavailable, trio.TooSlowError) as error:
        return {"status": "error", "error": str(error) or "timed out"}
    return {
        "status": "ok",
        "latency_ms": round(latency, 3),
        "embedded": state.embedded_redis,
        **info,
    }


@health.get("/health")
@answers(*public_answers.HEALTH)
async def get_health() -> tuple[dict[str, Any], int]:
    state = app_state(current_app)
    components = {"redis": await _redis_health()}
    problems = state.condition.problems()
    healthy = all(c["status"] == "ok" for c in components.values()) and not problems
    admin = await _from_admin()
    # (asked afresh for the admin; anyone else shares an answer a few seconds old)
    fresh = _docker_health() if admin else state.docker_status.of(_docker_health)
    components["docker"] = await fresh
    if not admin:  # (where the engine is, a path or an address on the host, is the admin's)
        docker = components["docker"]
        components["docker"] = (
            {"status": docker["status"]}
            | ({"error": "the Docker engine is not reachable"} if "error" in docker else {})
            | ({"api_version": docker["api_version"]} if "api_version" in docker else {})
        )
        problems = {name: PUBLIC_PROBLEMS.get(name, reason) for name, reason in problems.items()}
    if (workers := state.condition.workers) is not None:
        counts = workers.counts()
        running = counts["running"] == counts["configured"]
        components["workers"] = {"status": "ok" if running else "restarting", **counts}
    body: dict[str, Any] = {
        "status": "healthy" if healthy else "unhealthy",
        "version": __version__,
        "uptime_seconds": round(trio.current_time() - state.started_at, 1),
        "components": components,
    }
    if problems:
        body["problems"] = problems
    if healthy:
        body["certificates"] = await _certificates(named=admin)
    return body, 200 if healthy else 503


async def _docker_health() -> dict[str, Any]:
    """The engine at DOCKER_HOST: reported, never a reason for 503 (the gateway proxies and
    issues certificates without it; only the Docker service endpoints need it)."""
    state = app_state(current_app)
    if state.docker is None:
        return {"status": "unavailable", "error": "no engine configured"}
    try:
        with trio.fail_after(PING_TIMEOUT_SECONDS):
            version = await state.docker.version()
    except (EngineUnavailable, EngineError) as error:
        return {"status": "unavailable", "docker_host": state.docker.host, "error": str(error)}
    except trio.TooSlowError:
        detail = f"no answer within {PING_TIMEOUT_SECONDS}s"
        return {"status": "unavailable", "docker_host": state.docker.host, "error": detail}
    return {"status": "ok", "docker_host": state.docker.host, "api_version": version}


async def _from_admin() -> bool:
    """Whether the request carries the admin token (`/health` needs none)."""
    if not request.headers.get("Authorization"):
        return False
    try:
        with trio.fail_after(PING_TIMEOUT_SECONDS):
            return (await authenticate()).is_admin
    except (ApiError, StorageUnavailable, trio.TooSlowError):  # (a health check answers anyway)
        return False


async def _certificates(*, named: bool) -> dict[str, Any] | None:
    """How many certificates, and the failing ones with their error and next retry: named
    (`named`) only to the admin token, as they are every owner's; anyone else gets the count.
    (Anonymous callers read other owners' certificate names and ACME errors here.) The admin
    reads them afresh; anyone else an answer at most 5 s old (each read scans the keyspace)."""
    if named:
        return await _certificate_summary(named=True)
    shared = await app_state(current_app).certificate_summary.of(_counted_certificates)
    return shared or None


async def _counted_certificates() -> dict[str, Any]:
    return await _certificate_summary(named=False) or {}


async def _certificate_summary(*, named: bool) -> dict[str, Any] | None:
    try:
        with trio.fail_after(PING_TIMEOUT_SECONDS):
            found = await app_state(current_app).storage.certificates.all()
    except (StorageUnavailable, trio.TooSlowError):
        return None
    summary = CertificateSummary.of(found, utcnow())
    if not named:
        summary = summary.model_copy(update={"failing": []})
    return summary.model_dump(mode="json")
