"""`GET /metrics`: Prometheus metrics of this replica (see `oauthproxy.metrics`).

Answered from memory, Redis up or not. It names every served hostname and its traffic, so it
takes the admin token, checked in memory too (a scraper sends it as its bearer token).
"""

from __future__ import annotations

from quart import Blueprint, Response, current_app

from oauthproxy.api import public_answers
from oauthproxy.api.auth import bearer_secret
from oauthproxy.api.contract import answers
from oauthproxy.api.errors import ApiError
from oauthproxy.api.state import app_state

metrics = Blueprint("metrics", __name__)


@metrics.get("/metrics")
@answers(*public_answers.METRICS, bearer=True)
async def scrape() -> Response:
    """Prometheus text format: requests by hostname and status class, latency, upstream
    failures, open connections, running instances, certificate expiry times, the request
    log's counters."""
    logger = app_state(current_app).requests
    gauges = logger.metrics if logger is not None else None
    if gauges is None:
        raise ApiError(404, "metrics_disabled", "METRICS_ENABLED is off on this gateway")
    if not gauges.allows(bearer_secret()):
        raise ApiError(401, "unauthorized", "/metrics takes the admin token", field="Authorization")
    body, content_type = gauges.exposition()
    return Response(body, content_type=content_type)
