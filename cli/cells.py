"""How one value looks in a table cell, by style name.

The smart styles are `status`, `date`, `bool`, `number`, `status_code` and `mono`; any other
style is a rich style string (`"bold cyan"`) applied to the plain text. Missing values show `—`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.text import Text

NULL = "—"
RECENT = timedelta(days=30)
"""Dates closer to now than this are relative ("5m ago", "in 3d"); older ones are dates."""

_GOOD = ("●", "green")
_WAITING = ("◌", "yellow")
_BAD = ("✗", "red")
STATUS_LOOKS: dict[str, tuple[str, str]] = {
    **dict.fromkeys(("active", "ok", "running", "healthy", "ready"), _GOOD),
    **dict.fromkeys(("pending", "renewing", "starting", "restarting"), _WAITING),
    **dict.fromkeys(("error", "failed", "unhealthy", "expired", "exited", "dead"), _BAD),
}
STATUS_LEGEND = (("●", "active"), ("◌", "in progress"), ("✗", "failed, expired or stopped"))
"""What the status icons mean, for the legend under a list that shows them."""
STATUS_CODE_STYLES = {2: "green", 3: "yellow", 4: "red", 5: "bold red"}
MONO_FIELDS = frozenset({"token", "hash", "fingerprint", "jti", "owner_token_hash"})
_TIME_UNITS = ((86_400, "d"), (3_600, "h"), (60, "m"), (1, "s"))
_NUMBER_SUFFIXES = ((1_000_000, "M"), (1_000, "K"))


def is_missing(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def parse_time(value: Any) -> datetime | None:
    """An aware datetime from a datetime, an ISO 8601 string or epoch seconds; else None."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        when = datetime.fromtimestamp(value, UTC)
    else:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def relative_time(when: datetime, now: datetime) -> str:
    """ "5m ago", "2h ago", "in 3d"; the date itself when it is RECENT or more away."""
    delta = now - when
    if abs(delta) >= RECENT:
        return when.date().isoformat()
    seconds = int(abs(delta).total_seconds())
    if seconds == 0:
        return "just now"
    size, unit = next((size, unit) for size, unit in _TIME_UNITS if seconds >= size)
    amount = f"{seconds // size}{unit}"
    return f"{amount} ago" if delta > timedelta(0) else f"in {amount}"


def short_number(value: float) -> str:
    """1500 → "1.5K", 2000000 → "2M"; smaller numbers as they are."""
    for size, suffix in _NUMBER_SUFFIXES:
        if abs(value) >= size:
            return f"{value / size:.1f}".removesuffix(".0") + suffix
    return f"{value:g}"


_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")


def pem_summary(text: str) -> str | None:
    """ "PEM: 2 certificates (-o json has it)" for text holding PEM blocks; else None.
    Tables never print PEM: forty rows of base64 say nothing a person reads."""
    blocks = Counter(label.lower() for label in _PEM_BLOCK.findall(text))
    if not blocks:
        return None
    parts = (f"{count} {label}{'s' if count > 1 else ''}" for label, count in blocks.items())
    return f"PEM: {', '.join(parts)} (-o json has it)"


def one_line(text: str) -> str:
    """The first line of `text`, with an ellipsis when more lines follow (list cells)."""
    first, _, rest = text.strip().partition("\n")
    return f"{first.rstrip()} …" if rest.strip() else first


def plain(value: Any) -> str:
    """Text for any JSON value; lists and objects are summarised to fit a cell, PEM too."""
    if is_missing(value):
        return NULL
    if isinstance(value, str):
        return pem_summary(value) or value
    if isinstance(value, list):
        if all(not isinstance(item, list | dict) for item in value):
            return ", ".join(plain(item) for item in value)
        return f"{len(value)} items"
    if isinstance(value, dict):
        if len(value) <= 3 and all(not isinstance(v, list | dict) for v in value.values()):
            return ", ".join(f"{key}={plain(item)}" for key, item in value.items())
        return f"{len(value)} fields"
    return str(value)


def status_cell(value: Any) -> Text:
    text = str(value)
    icon, colour = STATUS_LOOKS.get(text.lower(), ("", ""))
    return Text(f"{icon} {text}" if icon else text, style=colour)


def bool_cell(value: Any) -> Text:
    if not isinstance(value, bool):
        return Text(plain(value))
    return Text("✓", style="green") if value else Text("✗", style="red")


def number_cell(value: Any) -> Text:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return Text(short_number(value) if is_number else plain(value), justify="right")


def status_code_cell(value: Any) -> Text:
    try:
        family = int(value) // 100
    except (TypeError, ValueError):
        return Text(plain(value))
    return Text(str(value), style=STATUS_CODE_STYLES.get(family, ""))


def date_cell(value: Any, now: datetime) -> Text:
    when = parse_time(value)
    return Text(relative_time(when, now) if when else plain(value))


def mono_cell(value: Any) -> Text:
    return Text(plain(value), style="magenta")


_SMART_CELLS: dict[str, Callable[[Any], Text]] = {
    "status": status_cell,
    "bool": bool_cell,
    "number": number_cell,
    "status_code": status_code_cell,
    "mono": mono_cell,
}


def cell(value: Any, style: str, now: datetime) -> Text:
    """The cell for `value` in `style` (a smart style name or a rich style string)."""
    if is_missing(value):
        return Text(NULL, style="dim")
    if style == "date":
        return date_cell(value, now)
    smart = _SMART_CELLS.get(style)
    return smart(value) if smart else Text(plain(value), style=style)


def infer_style(key: str, value: Any) -> str:
    """A smart style for a field no layout describes, judged by its name and value."""
    name = key.rsplit(".", 1)[-1]
    if isinstance(value, bool):
        return "bool"
    if name in ("status", "status_code"):
        return name
    if name.endswith("_at") or name == "timestamp":
        return "date"
    if name in MONO_FIELDS or name.endswith("_id"):
        return "mono"
    return ""
