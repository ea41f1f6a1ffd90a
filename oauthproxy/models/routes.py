"""Routes: priority-ordered path rules that send matching requests to another target."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from oauthproxy.models.common import Hostname, OwnerHash, Record, utcnow


class TargetType(StrEnum):
    PORT = "port"
    SERVICE = "service"
    HOSTNAME = "hostname"
    URL = "url"


class RouteScope(StrEnum):
    GLOBAL = "global"
    PROXY = "proxy"


class Route(Record):
    """`route:{id}`, indexed by `route:priority:{prio}:{id}` and `route:unique:{path}:{prio}`."""

    route_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    path_pattern: str = Field(min_length=1, max_length=1024)
    target_type: TargetType
    target_value: str = Field(min_length=1)
    priority: int = Field(default=50, ge=0, le=1000)
    methods: list[str] | None = None
    is_regex: bool = False
    description: str = ""
    enabled: bool = True
    scope: RouteScope = RouteScope.GLOBAL
    proxy_hostnames: list[Hostname] = Field(default_factory=list)
    owner_token_hash: OwnerHash | None = None
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
