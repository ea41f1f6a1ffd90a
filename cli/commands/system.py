"""Top-level commands about the gateway itself."""

from __future__ import annotations

from http import HTTPStatus

from cli.client import api_path
from cli.session import Session


def metrics(*, session: Session) -> None:
    """Print the gateway's Prometheus metrics (GET /metrics; the admin token)."""
    session.output.console.file.write(session.api.text("/metrics"))


def health(*, session: Session) -> int:
    """Check the gateway's health (no token needed; with the admin token the failing
    certificates are named); exits 1 when it is unhealthy."""
    report = session.api.request(
        "GET", "/health", auth=session.api.has_token, also_accept={HTTPStatus.SERVICE_UNAVAILABLE}
    )
    session.show(report)
    return 0 if report.get("status") == "healthy" else 1


def redis_accept(*, session: Session) -> None:
    """After Redis lost its data and you restored it (`config load`): serve what Redis holds now
    (admin only). Until then the gateway keeps serving its last known configuration."""
    session.show(session.api.post(api_path("redis", "accept"), None))
