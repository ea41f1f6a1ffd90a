"""The rows of the proxy-bound part of `just bench`, their medians, and how they print.

A `ProxyRow` is one contender measured `--rounds` times (round-robin with the others, so the
machine's other load falls on all of them alike); its columns are the medians of its rounds.
The same shape carries the HTTP/2 rows (req/s by h2load), the TLS handshake rows (handshakes/s,
CPU per handshake) and the WORKERS rows (CPU of the whole process tree).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.table import Table

PROXY_TARGET = 1.0
"""The gateway's proxy-bound req/s ÷ Caddy's (issue 14)."""
AUTH_TARGET = 0.8
"""The gateway's proxy-bound req/s with a valid JWT on every request ÷ without auth (issue 14's
earlier auth target, measured where the gateway is the bottleneck)."""
HANDSHAKE_TARGET = 1.3
"""The gateway's CPU per new TLS handshake ÷ nginx's, at most (issue 14)."""
WORKERS_TARGET = 0.8
"""WORKERS=N req/s ÷ WORKERS=1 req/s, at least this times N where the machine has the cores."""


@dataclass
class Round:
    rate: float
    """Requests (or handshakes) per second."""
    p99_ms: float
    cpu_us: float
    """CPU µs of the measured process(es) per request (or handshake)."""
    count: int
    errors: int


@dataclass
class ProxyRow:
    name: str
    setup: str
    measured: str
    """Whose CPU time `cpu_us` is."""
    rounds: list[Round] = field(default_factory=list)
    rate: float = math.nan
    p99_ms: float = math.nan
    cpu_us: float = math.nan
    errors: int = 0
    detail: str = ""
    """What else the row needs said (the negotiated protocol, the share of resumed handshakes)."""

    def add(self, done: Round) -> None:
        self.rounds.append(done)
        self.rate = median([r.rate for r in self.rounds])
        self.p99_ms = median([r.p99_ms for r in self.rounds])
        self.cpu_us = median([r.cpu_us for r in self.rounds])
        self.errors = sum(r.errors for r in self.rounds)


@dataclass
class ProxyBound:
    layout: str
    """Which CPU runs what."""
    table: list[ProxyRow] = field(default_factory=list)
    http2: list[ProxyRow] = field(default_factory=list)
    handshakes: list[ProxyRow] = field(default_factory=list)
    workers: list[ProxyRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Rows skipped and why, and what the machine allows."""


def median(values: list[float]) -> float:
    """The middle value (the upper one of an even count); NaN when there is none."""
    ordered = sorted(value for value in values if not math.isnan(value))
    return ordered[len(ordered) // 2] if ordered else math.nan


def ratio(top: float, bottom: float) -> float:
    return top / bottom if bottom and not math.isnan(bottom) else math.nan


def _f(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _row(rows: list[ProxyRow], name: str) -> ProxyRow | None:
    return next((row for row in rows if row.name == name), None)


PROXY_HEADINGS = (
    "proxy",
    "req/s",
    "p99 ms",
    "CPU µs/req",
    "req/s vs Caddy",
    "CPU vs Caddy",
    "errors",
    "setup",
)


Grid = tuple[str, tuple[str, ...], list[tuple[str, ...]]]
"""A caption, the headings and the rows of cells of one table."""
TEXT_COLUMNS = ("proxy", "row", "CPU of", "detail", "setup")


def grids(result: ProxyBound) -> list[Grid]:
    """The tables of the proxy-bound part, as text cells, for each part that has rows."""
    made: list[Grid] = []
    headings: tuple[str, ...]
    caddy = _row(result.table, "caddy")
    if result.table:
        cells: list[tuple[str, ...]] = [
            (
                row.name,
                _f(row.rate),
                _f(row.p99_ms, 2),
                _f(row.cpu_us),
                _f(ratio(row.rate, caddy.rate) if caddy else math.nan, 2),
                _f(ratio(caddy.cpu_us, row.cpu_us) if caddy else math.nan, 2),
                str(row.errors),
                row.setup,
            )
            for row in result.table
        ]
        caption = "proxy-bound (nginx `return 200` backend; one core per proxy)"
        made.append((caption, PROXY_HEADINGS, cells))
    for caption, rows, unit in (
        ("HTTP/2 over TLS (h2load)", result.http2, "req"),
        (
            "new TLS connections: handshake, GET /, close (one core per server)",
            result.handshakes,
            "handshake",
        ),
        ("WORKERS (process tree CPU)", result.workers, "req"),
    ):
        if rows:
            headings = (
                "row",
                "per s",
                "p99 ms",
                f"CPU µs/{unit}",
                "CPU of",
                "detail",
                "errors",
            )
            cells = [
                (
                    row.name,
                    _f(row.rate),
                    _f(row.p99_ms, 2),
                    _f(row.cpu_us),
                    row.measured,
                    row.detail,
                    str(row.errors),
                )
                for row in rows
            ]
            made.append((caption, headings, cells))
    return made


def tables(result: ProxyBound) -> list[tuple[str, Table]]:
    """The printed tables: (caption, table) for each part that has rows."""
    made = []
    for caption, headings, cells in grids(result):
        table = Table(box=box.MARKDOWN)
        for heading in headings:
            text = heading in TEXT_COLUMNS
            table.add_column(heading, justify="left" if text else "right", no_wrap=True)
        for row in cells:
            table.add_row(*row)
        made.append((caption, table))
    return made


def markdown(result: ProxyBound, rounds: int) -> str:
    """The proxy-bound part for docs/benchmarks.md: each table under its caption, then the
    verdicts and notes as a list."""
    parts = []
    for caption, headings, cells in grids(result):
        rule = "|".join("---" if h in TEXT_COLUMNS else "---:" for h in headings)
        table = [f"| {' | '.join(headings)} |", f"|{rule}|"]
        table += [f"| {' | '.join(row)} |" for row in cells]
        parts.append(f"**{caption}**\n\n" + "\n".join(table) + "\n")
    parts.append("".join(f"- {line}\n" for line in lines(result, rounds)))
    return "\n".join(parts)


def from_json(data: dict[str, Any]) -> ProxyBound:
    """A `ProxyBound` as `run.py` wrote it (its NaNs written as null)."""

    def number(value: float | None) -> float:
        return math.nan if value is None else value

    def row(fields: dict[str, Any]) -> ProxyRow:
        made = ProxyRow(fields["name"], fields["setup"], fields["measured"])
        made.detail = fields["detail"]
        for done in fields["rounds"]:
            rate, p99, cpu = (number(done[key]) for key in ("rate", "p99_ms", "cpu_us"))
            made.add(Round(rate, p99, cpu, done["count"], done["errors"]))
        return made

    return ProxyBound(
        data["layout"],
        table=[row(fields) for fields in data["table"]],
        http2=[row(fields) for fields in data["http2"]],
        handshakes=[row(fields) for fields in data["handshakes"]],
        workers=[row(fields) for fields in data["workers"]],
        notes=list(data["notes"]),
    )


def lines(result: ProxyBound, rounds: int) -> list[str]:
    """The verdicts against issue 14's targets, the layout and the notes."""
    said = [f"proxy-bound: {result.layout}; medians of {rounds} round(s)"]
    gateway, caddy = _row(result.table, "gateway"), _row(result.table, "caddy")
    if gateway and caddy:
        share = ratio(gateway.rate, caddy.rate)
        said.append(
            f"proxy-bound: gateway ÷ Caddy = {_f(share, 2)} in req/s, "
            f"{_f(ratio(caddy.cpu_us, gateway.cpu_us), 2)} in requests per CPU second (target ≥ "
            f"{PROXY_TARGET:.1f}: {'met' if share >= PROXY_TARGET else 'not met'})"
        )
    auth = _row(result.table, "gateway auth")
    if gateway and auth:
        share = ratio(auth.rate, gateway.rate)
        said.append(
            f"proxy-bound auth: gateway auth ÷ gateway = {_f(share, 2)} in req/s, "
            f"{_f(ratio(gateway.cpu_us, auth.cpu_us), 2)} in requests per CPU second (target ≥ "
            f"{AUTH_TARGET:.1f}: {'met' if share >= AUTH_TARGET else 'not met'}); CPU "
            f"{_f(auth.cpu_us)} vs {_f(gateway.cpu_us)} µs/req"
        )
    full = {row.name: row for row in result.handshakes if "resumed" not in row.name}
    if "gateway" in full and "nginx" in full:
        cost = ratio(full["gateway"].cpu_us, full["nginx"].cpu_us)
        said.append(
            f"new TLS handshakes: gateway CPU ÷ nginx CPU = {_f(cost, 2)} per handshake (target ≤ "
            f"{HANDSHAKE_TARGET:.1f}: {'met' if cost <= HANDSHAKE_TARGET else 'not met'})"
        )
    if len(result.workers) == 2:
        one, two = result.workers
        scale = ratio(two.rate, one.rate)
        said.append(
            f"WORKERS: {two.name} ÷ {one.name} = {_f(scale, 2)} in req/s "
            f"(target ≥ {2 * WORKERS_TARGET:.1f} where 2 cores are free for the gateway), CPU "
            f"per request {_f(two.cpu_us)} vs {_f(one.cpu_us)} µs"
        )
    return said + result.notes
