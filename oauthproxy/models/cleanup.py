"""What the orphan cleanup found and did (`POST /api/v1/cleanup/orphaned`)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from oauthproxy.models.common import Query, Record


class OrphanAction(StrEnum):
    DELETE = "delete"
    """The key (with what a normal delete takes along: indexes, events) goes."""
    HAND_OVER = "hand_over"
    """A domain mapping moves to another certificate that covers the domain."""
    KEEP = "keep"
    """Odd, but possibly meant: reported, never changed."""


class Orphan(Record):
    kind: str
    """What it is: `proxy`, `certificate`, `service`, `route`, `docker_service`, `token_hash`,
    `cert_domain`, `route_index`, `service_url`, `service_set_entry`, `workflow_state`,
    `cert_status`."""
    name: str
    problem: str
    action: OrphanAction
    key: str
    """The Redis key it lives in."""


class CleanupQuery(Query):
    dry_run: bool = Field(default=False, description="Only report what would be removed")


class CleanupReport(Record):
    dry_run: bool
    removed: int
    """How many were deleted or handed over (0 on a dry run)."""
    orphans: list[Orphan]
