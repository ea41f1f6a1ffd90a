"""The request log's query parameters (`/api/v1/logs/*`), validated at the API's edge."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, field_validator

from oauthproxy.models.common import IpAddress, Query


class Level(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


Hours = Field(default=24.0, gt=0, le=8760, description="How far back to look, in hours")
Limit = Field(default=100, ge=1, le=1000, description="At most this many entries, newest first")


class LogQuery(Query):
    """`GET /api/v1/logs/search` (and the narrower endpoints, which take a subset)."""

    hours: float = Hours
    limit: int = Limit
    q: str | None = Field(
        default=None,
        max_length=500,
        description="Search terms: status:500 host:... ip:... user:... client:... method:GET "
        "protocol:HTTP/2 path:/api level:ERROR event:websocket errors slow, and bare words",
    )
    event: str | None = Field(default=None, max_length=64, description="request, websocket, sse")
    level: Level | None = None
    hostname: str | None = Field(default=None, max_length=253)
    status: int | None = Field(default=None, ge=100, le=599)
    path: str | None = Field(default=None, max_length=2048, description="A path prefix")
    method: str | None = Field(default=None, max_length=16, pattern=r"^[A-Za-z]+$")
    protocol: str | None = Field(
        default=None,
        pattern=r"^(?i:(http/)?(1\.[01]|2(\.0)?)|h2)$",
        description="HTTP/1.1, HTTP/1.0 or HTTP/2 (also 1.1, 2, h2)",
    )
    user: str | None = Field(default=None, max_length=256)
    ip: IpAddress | None = None
    client_id: str | None = Field(default=None, max_length=256)
    errors: bool = False
    slow: bool = False

    @field_validator("q")
    @classmethod
    def _few_terms(cls, value: str | None) -> str | None:
        """Every bare word is looked for in every entry a search reads (up to 5,000): the
        number of words bounds a search's work, which any token may ask for."""
        if value is not None and len(value.split()) > MAX_TERMS:
            raise ValueError(f"at most {MAX_TERMS} search terms")
        return value


MAX_TERMS = 20
"""Search terms (filters and bare words) in one `q`."""

STREAM_ID_PART_MAX = 2**64 - 1
"""The largest part of a Redis stream id (a larger one is Redis's error, not a missing entry)."""


class RecentQuery(Query):
    """`GET /api/v1/logs/errors` and the per-IP and per-client endpoints."""

    hours: float = Hours
    limit: int = Limit
    event: str | None = Field(default=None, max_length=64)
    level: Level | None = None


class StatsQuery(Query):
    hours: float = Hours


class FollowQuery(Query):
    """`GET /api/v1/logs/follow`: the live stream, long-polled."""

    after: str | None = Field(
        default=None,
        pattern=r"^\d{1,20}-\d{1,20}$",
        description="The last stream id seen; omitted: the newest `limit` entries",
    )
    limit: int = Field(default=100, ge=1, le=1000)
    wait: float = Field(
        default=25,
        ge=0,
        le=30,
        description="With `after`: seconds to wait for a new entry when there is none yet "
        "(the answer comes as soon as one arrives; 0 answers at once)",
    )

    @field_validator("after")
    @classmethod
    def _stream_id(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = [int(part) for part in value.split("-")]
        if any(part > STREAM_ID_PART_MAX for part in parts) or min(parts) == STREAM_ID_PART_MAX:
            last = f"{STREAM_ID_PART_MAX}-{STREAM_ID_PART_MAX}"
            raise ValueError(f"a stream id below {last} (each part at most {STREAM_ID_PART_MAX})")
        return value
