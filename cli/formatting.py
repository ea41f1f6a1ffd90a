"""API data as a rich table, JSON, YAML or CSV.

A list becomes a table laid out for its kind (see `cli.columns`) with a summary line, or the
kind's hint when it is empty; a single object becomes a two-column field/value table. The machine
formats print the API's data unchanged.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml
from rich.box import ROUNDED
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from cli.cells import cell
from cli.columns import LAYOUTS, Kind, Layout, Row, detect_kind, layout_for, style_for
from cli.config import OutputFormat

SECRET_FIELDS = frozenset(
    {"token", "client_secret", "private_key_pem", "registration_access_token"}
)
HIDDEN = "•••••••• (hidden)"
ROW_STYLES = ("none", "dim")


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def to_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def as_rows(data: Any) -> list[Row]:
    """A list of objects from an object, a list, or a bare value (as `{"value": ...}`)."""
    items = data if isinstance(data, list) else [data]
    return [item if isinstance(item, dict) else {"value": item} for item in items]


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def to_csv(data: Any) -> str:
    """A header row of every field (in order of first appearance), then one line per object;
    nested values are JSON-encoded."""
    rows = as_rows(data)
    fields = list(dict.fromkeys(field for row in rows for field in row))
    if not fields:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({field: _csv_value(value) for field, value in row.items()} for row in rows)
    return buffer.getvalue()


def _visible(field: str, value: Any, reveal_secrets: bool) -> Any:
    secret = field.rsplit(".", 1)[-1] in SECRET_FIELDS
    return HIDDEN if secret and value and not reveal_secrets else value


def _is_nested(value: Any) -> bool:
    return isinstance(value, dict) and bool(value)


def flatten(record: Row, prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted fields after the plain ones: `{"a": {"b": 1}}` → `{"a.b": 1}`."""
    flat = {f"{prefix}{field}": value for field, value in record.items() if not _is_nested(value)}
    for field, value in record.items():
        if _is_nested(value):
            flat.update(flatten(value, f"{prefix}{field}."))
    return flat


def record_table(record: Row, layout: Layout | None, now: datetime, reveal: bool) -> Table:
    """One object as field/value rows: its kind's columns first and styled as in lists."""
    flat = flatten(record)
    leading = [column.field for column in layout.columns if column.field in flat] if layout else []
    table = Table(box=ROUNDED, show_header=False, row_styles=ROW_STYLES)
    table.add_column("Field", style="bold")
    table.add_column("Value", overflow="fold")
    for field in dict.fromkeys([*leading, *flat]):
        value = flat[field]
        style = style_for(field, value, layout)
        table.add_row(field, cell(_visible(field, value, reveal), style, now))
    return table


def list_table(rows: Sequence[Row], layout: Layout, now: datetime, reveal: bool) -> Table:
    table = Table(box=layout.box, header_style="bold", row_styles=ROW_STYLES)
    for column in layout.columns:
        table.add_column(column.header, overflow="fold" if column.style == "mono" else "ellipsis")
    for row in rows:
        table.add_row(
            *(
                cell(_visible(column.field, column.value(row), reveal), column.style, now)
                for column in layout.columns
            )
        )
    return table


def render_table(
    data: Any, *, kind: Kind | None = None, now: datetime, reveal_secrets: bool = False
) -> RenderableType:
    """The table view of `data`; `kind` is detected from the data when not given."""
    rows = as_rows(data)
    kind = kind or detect_kind(rows)
    if isinstance(data, dict):
        return record_table(data, LAYOUTS[kind] if kind else None, now, reveal_secrets)
    layout = layout_for(kind, rows)
    if not rows:
        return Text(layout.empty_hint)
    return Group(
        list_table(rows, layout, now, reveal_secrets), Text(layout.summary(rows), style="dim")
    )


MACHINE_FORMATS: dict[OutputFormat, Callable[[Any], str]] = {
    OutputFormat.JSON: to_json,
    OutputFormat.YAML: to_yaml,
    OutputFormat.CSV: to_csv,
}


@dataclass(frozen=True)
class Output:
    """Where and how commands show what the API answered."""

    format: OutputFormat
    console: Console

    def show(self, data: Any, *, kind: Kind | None = None, reveal_secrets: bool = False) -> None:
        """Print `data`; secrets appear in tables only with `reveal_secrets`."""
        if self.format is OutputFormat.TABLE:
            now = datetime.now(UTC)
            self.console.print(
                render_table(data, kind=kind, now=now, reveal_secrets=reveal_secrets)
            )
        else:
            self.console.file.write(MACHINE_FORMATS[self.format](data))

    def note(self, line: str) -> None:
        """A line for people under a table (machine formats carry only the data)."""
        if self.format is OutputFormat.TABLE:
            self.console.print(line, markup=False, highlight=False)
