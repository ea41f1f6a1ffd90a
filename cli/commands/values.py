"""Turning what the user typed into request fields: present values, comma lists, JSON objects."""

from __future__ import annotations

import json
from typing import Any

from cli.errors import CliError


def present(**fields: Any) -> dict[str, Any]:
    """The fields that were given (not None)."""
    return {field: value for field, value in fields.items() if value is not None}


def comma_list(value: str | None) -> list[str] | None:
    """`"a, b"` → `["a", "b"]`; None or an empty string → None."""
    if not value:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def json_object(value: str | None, option: str) -> dict[str, Any] | None:
    """A JSON object typed on the command line; None or an empty string → None."""
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as error:
        raise CliError(f"{option} is not valid JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise CliError(f'{option} must be a JSON object like \'{{"name": "value"}}\'')
    return parsed


def header_map(values: list[str] | None, option: str) -> dict[str, str] | None:
    """`["X-A=1"]` → `{"X-A": "1"}`; `[""]` → `{}`; None when the option was not given."""
    if values is None:
        return None
    pairs = [value.partition("=") for value in values if value]
    malformed = [name for name, equals, _ in pairs if not equals or not name]
    if malformed:
        raise CliError(f"{option} expects NAME=VALUE, got {malformed[0]!r}")
    return {name: value for name, _, value in pairs}
