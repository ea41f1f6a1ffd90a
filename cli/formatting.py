"""API data as a rich table, JSON, YAML or CSV.

A list becomes a table laid out for its kind (see `cli.columns`) with a summary line, a legend
of the status marks it shows, or the kind's hint when it is empty; cells hold one line (a long
error ends in an ellipsis). A single object becomes a two-column field/value table of its kind's
key fields (`cli.details`), or of every field with `all_fields`. Tables never print PEM. The
machine formats print the API's data unchanged.
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

from cli.cells import STATUS_LEGEND, cell, one_line, pem_summary
from cli.columns import LAYOUTS, Column, Kind, Layout, Row, detect_kind, layout_for, style_for
from cli.config import OutputFormat
from cli.details import DETAILS
from cli.visible import has_controls, json_escaped, visible, visible_data

SECRET_FIELDS = frozenset(
    {"token", "client_secret", "private_key_pem", "registration_access_token"}
)
HIDDEN = "•••••••• (hidden)"
ROW_STYLES = ("none", "dim")
FITS = 14
"""A record with at most this many fields shows them all (a status, a delete's answer)."""


def to_json(data: Any) -> str:
    return json_escaped(json.dumps(data, indent=2, ensure_ascii=False)) + "\n"


def to_yaml(data: Any) -> str:
    """(With a control character anywhere, every non-ASCII character is escaped: PyYAML
    would write C1 controls and bidi overrides as they are.)"""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=not has_controls(data))


def as_rows(data: Any) -> list[Row]:
    """A list of objects from an object, a list, or a bare value (as `{"value": ...}`)."""
    items = data if isinstance(data, list) else [data]
    return [item if isinstance(item, dict) else {"value": item} for item in items]


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""How a spreadsheet knows a cell is a formula (OWASP's CSV injection list)."""


def _csv_value(value: Any) -> str:
    """A cell; text that a spreadsheet would run as a formula (an anonymous `client_id` of
    `=HYPERLINK(...)` reaches the log) gets a leading `'`, which shows it as text."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "'" + text if isinstance(value, str) and text.startswith(_FORMULA_STARTS) else text


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


def _record_rows(
    record: Row, layout: Layout | None, details: tuple[Column, ...]
) -> tuple[list[tuple[str, Any, str]], int]:
    """(field, value, style) rows of `record`, and how many of its fields they leave out:
    `details` when given and the record is longer than FITS, else every field, the layout's
    columns first."""
    flat = flatten(record)
    if details and len(flat) > FITS:
        shown = [
            (column.field, column.value(record) if column.derive else flat[column.field])
            for column in details
            if column.field in flat or (column.derive and column.value(record) is not None)
        ]
        styles = {column.field: column.style for column in details}
        rows = [
            (field, value, styles[field] or style_for(field, value, layout))
            for field, value in shown
        ]
        return rows, len(flat.keys() - {field for field, _ in shown})
    leading = [column.field for column in layout.columns if column.field in flat] if layout else []
    fields = dict.fromkeys([*leading, *flat])
    return [(field, flat[field], style_for(field, flat[field], layout)) for field in fields], 0


def record_table(
    record: Row,
    layout: Layout | None,
    now: datetime,
    reveal: bool,
    details: tuple[Column, ...] = (),
) -> RenderableType:
    """One object as field/value rows, styled as in lists; a note says what `details` left out."""
    rows, left_out = _record_rows(record, layout, details)
    table = Table(box=ROUNDED, show_header=False, row_styles=ROW_STYLES)
    table.add_column("Field", style="bold")
    table.add_column("Value", overflow="fold")
    for field, value, style in rows:
        table.add_row(field, cell(_visible(field, value, reveal), style, now))
    if not left_out:
        return table
    more = f"{left_out} more field{'s' if left_out > 1 else ''}"
    return Group(table, Text(f"{more}: --all shows every field, -o json the data", style="dim"))


def _list_cell(column: Column, row: Row, reveal: bool, now: datetime) -> Text:
    value = _visible(column.field, column.value(row), reveal)
    if isinstance(value, str):
        value = pem_summary(value) or one_line(value)
    return cell(value, column.style, now)


def legend(layout: Layout, cells: list[list[Text]]) -> str | None:
    """ "Legend: ● active · ✗ failed, …" for the marks the table's cells show; None if none."""
    texts = [
        text.plain
        for column, column_cells in zip(layout.columns, cells, strict=True)
        if column.style == "status" or column.derive
        for text in column_cells
    ]
    first_words = {text.split(" ", 1)[0] for text in texts}
    marks = [(icon, meaning) for icon, meaning in STATUS_LEGEND if icon in first_words]
    marks += [(mark, meaning) for mark, meaning in layout.legend if any(mark in t for t in texts)]
    if not marks:
        return None
    return "Legend: " + " · ".join(f"{mark} {meaning}" for mark, meaning in marks)


def list_table(
    rows: Sequence[Row], layout: Layout, now: datetime, reveal: bool
) -> tuple[Table, str | None]:
    """The rows as a table, one line per cell; and the legend of the marks it shows."""
    table = Table(box=layout.box, header_style="bold", row_styles=ROW_STYLES)
    for column in layout.columns:
        if column.cut:
            table.add_column(column.header, max_width=column.cut, no_wrap=True)
        else:
            table.add_column(
                column.header, overflow="fold" if column.style == "mono" else "ellipsis"
            )
    cells = [[_list_cell(column, row, reveal, now) for row in rows] for column in layout.columns]
    for row_cells in zip(*cells, strict=True):
        table.add_row(*row_cells)
    return table, legend(layout, cells)


def render_table(
    data: Any,
    *,
    kind: Kind | None = None,
    now: datetime,
    reveal_secrets: bool = False,
    all_fields: bool = False,
) -> RenderableType:
    """The table view of `data`; `kind` is detected from the data when not given."""
    rows = as_rows(data)
    kind = kind or detect_kind(rows)
    if isinstance(data, dict):
        layout = LAYOUTS[kind] if kind else None
        details = () if all_fields or kind is None else DETAILS.get(kind, ())
        return record_table(data, layout, now, reveal_secrets, details)
    layout = layout_for(kind, rows)
    if not rows:
        return Text(layout.empty_hint)
    table, marks = list_table(rows, layout, now, reveal_secrets)
    lines = [Text(marks, style="dim")] if marks else []
    return Group(table, *lines, Text(layout.summary(rows), style="dim"))


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

    def show(
        self,
        data: Any,
        *,
        kind: Kind | None = None,
        reveal_secrets: bool = False,
        all_fields: bool = False,
    ) -> None:
        """Print `data`; secrets appear in tables only with `reveal_secrets`, and one object's
        every field only with `all_fields`."""
        if self.format is OutputFormat.TABLE:
            now = datetime.now(UTC)
            table = render_table(
                visible_data(data),
                kind=kind,
                now=now,
                reveal_secrets=reveal_secrets,
                all_fields=all_fields,
            )
            self.console.print(table)
        elif self.format is OutputFormat.CSV and self.console.is_terminal:
            self.console.file.write(to_csv(visible_data(data)))
        else:
            self.console.file.write(MACHINE_FORMATS[self.format](data))

    def note(self, line: str) -> None:
        """A line for people under a table (machine formats carry only the data)."""
        if self.format is OutputFormat.TABLE:
            self.console.print(visible(line), markup=False, highlight=False)

    def text(self, text: str) -> None:
        """Text from the API as it is (a container's output), control characters spelled out
        (`cli.visible`), whatever the format."""
        self.console.print(visible(text), markup=False, highlight=False)
