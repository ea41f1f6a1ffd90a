"""Shared building blocks of the frozen models: base classes, names, timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints


class Record(BaseModel):
    """Something stored in Redis. Unknown fields are ignored so older gateways read newer data."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Request(BaseModel):
    """A request body. Unknown fields are refused so a typo never passes silently."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


Name = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
]
"""A resource name: letters, digits, `_`, `.`, `-`; 1-64 characters; starts alphanumeric."""

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _check_email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("expected an email address like admin@example.com")
    return value


Email = Annotated[str, StringConstraints(max_length=254), AfterValidator(_check_email)]

_HOSTNAME_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _check_hostname(value: str) -> str:
    lowered = value.lower().rstrip(".")
    labels = lowered.split(".")
    if len(lowered) > 253 or not all(_HOSTNAME_LABEL.match(label) for label in labels):
        raise ValueError("expected a DNS hostname like api.example.com")
    return lowered


Hostname = Annotated[str, AfterValidator(_check_hostname)]
"""A DNS hostname, stored lower-case without a trailing dot."""

OwnerHash = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
