"""The `events:workflow` stream: API writes queue an event in the same transaction as the data."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from coredis import PureToken

from oauthproxy.models.events import EventType, WorkflowEvent
from oauthproxy.storage import keys
from oauthproxy.storage.base import Pipeline, json_fields

STREAM_MAX_LENGTH = 10_000


def event_fields(event_type: EventType, hostname: str, **data: Any) -> dict[str, str]:
    """A workflow event as the stream entry's fields."""
    event = WorkflowEvent(event_type=event_type, hostname=hostname, data=data)
    return json_fields(
        event_type=event.event_type.value,
        hostname=event.hostname,
        data=event.data,
        timestamp=event.timestamp.isoformat(),
    )


def queue_event(pipe: Pipeline, event_type: EventType, hostname: str, **data: Any) -> None:
    """Append a workflow event to a transaction; it is published only if the transaction commits."""
    pipe.xadd(
        keys.EVENTS_WORKFLOW,
        event_fields(event_type, hostname, **data),
        trim_strategy=PureToken.MAXLEN,
        threshold=STREAM_MAX_LENGTH,
        trim_operator=PureToken.APPROXIMATELY,
    )


def parse_event(entry: Mapping[str, str] | Mapping[str | bytes, str | bytes]) -> WorkflowEvent:
    """A stream entry's fields back into the event they were written from."""
    fields = {_text(key): _text(value) for key, value in entry.items()}
    return WorkflowEvent(
        event_type=EventType(fields["event_type"]),
        hostname=fields["hostname"],
        data=json.loads(fields.get("data", "{}")),
        timestamp=datetime.fromisoformat(fields["timestamp"]),
    )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
