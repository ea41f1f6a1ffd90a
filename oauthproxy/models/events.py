"""Workflow events on the `events:workflow` stream: triggers for the instance supervisor."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from oauthproxy.models.common import Record, utcnow


class EventType(StrEnum):
    PROXY_CREATED = "proxy_created"
    PROXY_UPDATED = "proxy_updated"
    PROXY_DELETED = "proxy_deleted"
    CERTIFICATE_READY = "certificate_ready"
    ROUTES_CHANGED = "routes_changed"
    SERVICES_CHANGED = "services_changed"


ALL_HOSTS = "*"
"""The `hostname` of events that concern every instance (routes, services)."""


class WorkflowEvent(Record):
    event_type: EventType
    hostname: str
    data: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime = Field(default_factory=utcnow)
