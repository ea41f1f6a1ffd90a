"""The CLI's formatter and config resolution, as pure functions: no gateway, no terminal."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console, RenderableType

from cli.cells import cell, relative_time, short_number
from cli.columns import Kind, detect_kind
from cli.config import ClientConfig, Options, OutputFormat, parse_config_file, resolve_config
from cli.errors import CliError
from cli.formatting import HIDDEN, Output, render_table, to_csv, to_json, to_yaml

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)

TOKENS: list[dict[str, Any]] = [
    {
        "name": "admin",
        "hash": "sha256:" + "a" * 64,
        "cert_email": "admin@example.com",
        "created_at": "2025-03-08T12:00:00Z",
        "created_by": None,
        "is_admin": True,
    },
    {
        "name": "developer",
        "hash": "sha256:" + "b" * 64,
        "cert_email": "dev@example.com",
        "created_at": "2025-03-10T07:00:00Z",
        "created_by": "admin",
        "is_admin": False,
    },
]
PROXIES: list[dict[str, Any]] = [
    {
        "hostname": "api.example.com",
        "target_url": "http://backend:3000",
        "cert_name": "api-cert",
        "auth_enabled": True,
        "enable_http": True,
        "enable_https": True,
    },
    {
        "hostname": "app.example.com",
        "target_url": "http://localhost:8080",
        "cert_name": None,
        "auth_enabled": False,
        "enable_http": True,
        "enable_https": True,
    },
]
SERVICES: list[dict[str, Any]] = [
    {
        "service_name": "my-app",
        "service_type": "docker",
        "status": "running",
        "port_configs": [{"name": "http", "host": 3000, "container": 80}],
        "memory_limit": "512m",
        "cpu_limit": 1.0,
    },
    {
        "service_name": "redis",
        "service_type": "docker",
        "status": "running",
        "external_port": 6379,
        "internal_port": 6379,
        "memory_limit": "256m",
        "cpu_limit": 0.5,
    },
    {"service_name": "api-gateway", "service_type": "external", "status": "active"},
]


def text_of(renderable: RenderableType, width: int = 160) -> str:
    console = Console(file=io.StringIO(), width=width)
    console.print(renderable)
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


@pytest.mark.parametrize(
    ("sample", "kind"),
    [
        ({"name": "ci", "token": "acm_x"}, Kind.TOKENS),
        ({"name": "ci", "cert_email": "a@b.co"}, Kind.TOKENS),
        ({"cert_name": "web", "domains": ["a.example.com"]}, Kind.CERTIFICATES),
        ({"fullchain_pem": "-----BEGIN"}, Kind.CERTIFICATES),
        ({"hostname": "a.example.com", "target_url": "http://b:1"}, Kind.PROXIES),
        ({"hostname": "a.example.com", "target_url": "http://b:1", "cert_name": "c"}, Kind.PROXIES),
        ({"service_name": "app"}, Kind.SERVICES),
        ({"image": "nginx:latest"}, Kind.SERVICES),
        ({"route_id": "r1"}, Kind.ROUTES),
        ({"path_pattern": "/api/*"}, Kind.ROUTES),
        ({"client_id": "c1", "client_secret": None}, Kind.OAUTH_CLIENTS),
        ({"client_ip": "10.0.0.1"}, Kind.LOGS),
        ({"request_path": "/x"}, Kind.LOGS),
        ({"hostname": "a.example.com"}, None),
        ({"client_id": "c1"}, None),
        ({"status": "healthy"}, None),
    ],
)
def test_detects_each_kind_by_its_fields(sample: dict[str, Any], kind: Kind | None) -> None:
    assert detect_kind(sample) == kind
    assert detect_kind([sample, {"other": 1}]) == kind


def test_detection_of_nothing_is_no_kind() -> None:
    assert detect_kind([]) is None
    assert detect_kind("text") is None


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (timedelta(0), "just now"),
        (timedelta(seconds=-30), "30s ago"),
        (timedelta(minutes=-5, seconds=-20), "5m ago"),
        (timedelta(hours=-2, minutes=-59), "2h ago"),
        (timedelta(days=-3), "3d ago"),
        (timedelta(days=-29), "29d ago"),
        (timedelta(days=-400), "2024-02-04"),
        (timedelta(hours=2), "in 2h"),
        (timedelta(days=90), "2025-06-08"),
    ],
)
def test_relative_time(offset: timedelta, expected: str) -> None:
    assert relative_time(NOW + offset, NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-10T11:55:00Z", "5m ago"),
        ("2025-03-10T09:00:00+00:00", "3h ago"),
        ("2025-03-10T11:00:00", "1h ago"),
        (NOW.timestamp() - 120, "2m ago"),
        ("not a date", "not a date"),
        (None, "—"),
    ],
)
def test_date_cells_read_iso_strings_and_epoch_seconds(value: Any, expected: str) -> None:
    assert cell(value, "date", NOW).plain == expected


@pytest.mark.parametrize(
    ("status", "icon", "colour"),
    [
        ("active", "●", "green"),
        ("ok", "●", "green"),
        ("running", "●", "green"),
        ("healthy", "●", "green"),
        ("pending", "◌", "yellow"),
        ("error", "✗", "red"),
        ("failed", "✗", "red"),
    ],
)
def test_status_cells_have_icon_and_colour(status: str, icon: str, colour: str) -> None:
    rendered = cell(status, "status", NOW)
    assert rendered.plain == f"{icon} {status}"
    assert str(rendered.style) == colour


def test_unknown_status_is_plain_text() -> None:
    rendered = cell("paused", "status", NOW)
    assert rendered.plain == "paused"
    assert not str(rendered.style)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, "0"), (999, "999"), (1500, "1.5K"), (12_345, "12.3K"), (2_000_000, "2M"), (2.5, "2.5")],
)
def test_number_suffixes(value: float, expected: str) -> None:
    assert short_number(value) == expected
    assert cell(value, "number", NOW).plain == expected


@pytest.mark.parametrize(
    ("code", "colour"), [(200, "green"), (301, "yellow"), (404, "red"), (503, "bold red")]
)
def test_status_code_colours(code: int, colour: str) -> None:
    rendered = cell(code, "status_code", NOW)
    assert rendered.plain == str(code)
    assert str(rendered.style) == colour


@pytest.mark.parametrize(("value", "mark", "colour"), [(True, "✓", "green"), (False, "✗", "red")])
def test_bool_cells(value: bool, mark: str, colour: str) -> None:
    rendered = cell(value, "bool", NOW)
    assert (rendered.plain, str(rendered.style)) == (mark, colour)


@pytest.mark.parametrize("missing", [None, "", [], {}])
def test_missing_values_show_a_dash(missing: Any) -> None:
    for style in ("", "bold cyan", "status", "date", "bool", "number", "mono"):
        assert cell(missing, style, NOW).plain == "—"


def test_lists_and_objects_are_summarised() -> None:
    assert cell(["a.example.com", "b.example.com"], "", NOW).plain == "a.example.com, b.example.com"
    assert cell([{"a": 1}, {"b": 2}], "", NOW).plain == "2 items"
    assert cell({"cpu": 1, "memory": "512m"}, "", NOW).plain == "cpu=1, memory=512m"


def test_token_table_has_its_columns_and_summary() -> None:
    text = text_of(render_table(TOKENS, now=NOW))
    for expected in ("Token Name", "Certificate Email", "Created", "Owner", "admin@example.com"):
        assert expected in text
    assert "2d ago" in text
    assert "5h ago" in text
    assert "sha256:" not in text
    assert text.rstrip().endswith("Summary: 2 tokens | 1 admin")


def test_proxy_table_shows_listeners_and_summary() -> None:
    text = text_of(render_table(PROXIES, now=NOW))
    assert "HTTP | HTTPS✓" in text
    assert "HTTP | HTTPS⚠" in text
    assert text.rstrip().endswith("Summary: 2 proxies | 1 HTTPS | 1 with auth")


def test_service_table_shows_ports_resources_and_summary() -> None:
    text = text_of(render_table(SERVICES, now=NOW))
    for expected in ("3000→80", "6379→6379", "512m/1cpu", "256m/0.5cpu", "● running"):
        assert expected in text
    assert text.rstrip().endswith("Summary: 2 Docker | 1 External")


def test_zero_tallies_after_the_first_are_left_out() -> None:
    text = text_of(render_table([TOKENS[1]], now=NOW))
    assert text.rstrip().endswith("Summary: 1 token")


def test_every_other_row_is_dimmed_on_a_terminal() -> None:
    console = Console(file=io.StringIO(), width=160, force_terminal=True, color_system="standard")
    console.print(render_table(TOKENS, now=NOW))
    assert isinstance(console.file, io.StringIO)
    first, second = [line for line in console.file.getvalue().splitlines() if "example.com" in line]
    assert "\x1b[2madmin@example.com" not in first
    assert "\x1b[2mdev@example.com" in second


def test_objects_of_no_known_kind_get_every_field_as_a_column() -> None:
    rows = [
        {"job_id": "j1", "status": "ok"},
        {"job_id": "j2", "finished_at": "2025-03-09T12:00:00Z"},
    ]
    text = text_of(render_table(rows, now=NOW))
    for expected in ("Job Id", "Status", "Finished At", "● ok", "1d ago"):
        assert expected in text
    assert text.rstrip().endswith("Summary: 2 items")


@pytest.mark.parametrize(
    ("kind", "hint"),
    [
        (Kind.TOKENS, "No tokens yet. Create one: just token-generate <name> [email]"),
        (Kind.PROXIES, "No proxies yet. Create one: just proxy-create <hostname> <target-url>"),
        (None, "Nothing to show."),
    ],
)
def test_empty_lists_print_a_hint(kind: Kind | None, hint: str) -> None:
    assert text_of(render_table([], kind=kind, now=NOW)).strip() == hint


def test_a_single_object_is_a_field_value_table() -> None:
    health = {"status": "healthy", "components": {"redis": {"status": "ok", "latency_ms": 0.4}}}
    lines = text_of(render_table(health, now=NOW)).splitlines()
    assert [line.split("│")[1:3] for line in lines if "│" in line] == [
        [" status                      ", " ● healthy "],
        [" components.redis.status     ", " ● ok      "],
        [" components.redis.latency_ms ", " 0.4       "],
    ]


def test_a_single_object_leads_with_its_kinds_columns() -> None:
    as_the_api_sorts_it = dict(sorted(TOKENS[1].items()))
    text = text_of(render_table(as_the_api_sorts_it, now=NOW))
    fields = [line.split("│")[1].strip() for line in text.splitlines() if "│" in line]
    assert fields == ["name", "cert_email", "created_at", "created_by", "is_admin", "hash"]
    assert "5h ago" in text


def test_secrets_are_hidden_unless_revealed() -> None:
    created = {"name": "ci", "token": "acm_" + "s" * 40, "created_at": "2025-03-10T11:59:00Z"}
    hidden = text_of(render_table(created, now=NOW))
    assert created["token"] not in hidden
    assert HIDDEN in hidden
    revealed = text_of(render_table(created, now=NOW, reveal_secrets=True))
    assert created["token"] in revealed
    assert "1m ago" in revealed


def test_machine_formats_carry_the_same_data() -> None:
    rows = [*TOKENS, {"name": "extra", "scopes": ["a", "b"], "limits": {"rps": 5}}]
    assert json.loads(to_json(rows)) == rows
    assert yaml.safe_load(to_yaml(rows)) == rows
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert list(parsed[0]) == [*TOKENS[0], "scopes", "limits"]
    assert parsed[0]["name"] == "admin"
    assert parsed[0]["is_admin"] == "true"
    assert parsed[0]["created_by"] == ""
    assert parsed[0]["scopes"] == ""
    assert json.loads(parsed[2]["scopes"]) == ["a", "b"]
    assert json.loads(parsed[2]["limits"]) == {"rps": 5}


def test_csv_of_one_object_and_of_nothing() -> None:
    assert list(csv.DictReader(io.StringIO(to_csv(TOKENS[0])))) == [
        {field: str(value) if value is not None else "" for field, value in TOKENS[0].items()}
        | {"is_admin": "true"}
    ]
    assert to_csv([]) == ""


def test_output_writes_machine_formats_verbatim() -> None:
    console = Console(file=io.StringIO(), width=40)
    Output(OutputFormat.JSON, console).show([{"name": "[bold]x[/bold]"}])
    assert isinstance(console.file, io.StringIO)
    assert json.loads(console.file.getvalue()) == [{"name": "[bold]x[/bold]"}]


FILE = {"api_url": "http://file:9000", "token": "from-file", "format": "yaml"}
ENV = {"API_URL": "http://env:9000", "TOKEN": "from-token", "ADMIN_TOKEN": "from-admin"}


@pytest.mark.parametrize(
    ("options", "env", "file_values", "admin_token", "expected"),
    [
        (
            Options("from-option", "http://option:1/", OutputFormat.CSV),
            ENV,
            FILE,
            "from-admin-file",
            ClientConfig("http://option:1", "from-option", OutputFormat.CSV),
        ),
        (
            Options(),
            ENV,
            FILE,
            None,
            ClientConfig("http://env:9000", "from-token", OutputFormat.YAML),
        ),
        (
            Options(),
            {"ADMIN_TOKEN": "from-admin"},
            {},
            None,
            ClientConfig("http://localhost:9000", "from-admin", OutputFormat.TABLE),
        ),
        (
            Options(),
            {},
            FILE,
            "from-admin-file",
            ClientConfig("http://file:9000", "from-file", OutputFormat.YAML),
        ),
        (
            Options(),
            {},
            {},
            "from-admin-file",
            ClientConfig("http://localhost:9000", "from-admin-file", OutputFormat.TABLE),
        ),
        (Options(), {}, {}, None, ClientConfig("http://localhost:9000", None, OutputFormat.TABLE)),
        # this machine's admin-token file goes to this machine's gateway only: it went to any
        # base URL, and someone else's server received this gateway's admin token
        (
            Options(base_url="http://gateway.example.com:9000"),
            {},
            {},
            "from-admin-file",
            ClientConfig("http://gateway.example.com:9000", None, OutputFormat.TABLE),
        ),
        (
            Options(),
            {"API_URL": "http://127.0.0.2:9000"},
            {},
            "from-admin-file",
            ClientConfig("http://127.0.0.2:9000", "from-admin-file", OutputFormat.TABLE),
        ),
        (
            Options(base_url="http://[::1]:9000"),
            {},
            {},
            "from-admin-file",
            ClientConfig("http://[::1]:9000", "from-admin-file", OutputFormat.TABLE),
        ),
    ],
)
def test_config_resolution_order(
    options: Options,
    env: dict[str, str],
    file_values: dict[str, str],
    admin_token: str | None,
    expected: ClientConfig,
) -> None:
    assert resolve_config(options, env, file_values, admin_token) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("api_url: [unclosed", "not valid YAML"),
        ("- a list", "must be a mapping"),
        ("colour: blue", "unknown key 'colour'"),
        ("token: 12345", "token must be a string"),
    ],
)
def test_bad_config_files_are_refused(text: str, problem: str) -> None:
    with pytest.raises(CliError, match=problem):
        parse_config_file(text, Path("config.yml"))


@pytest.mark.parametrize(
    ("options", "file_values", "problem"),
    [
        (Options(base_url="localhost:9000"), {}, "must start with http"),
        (Options(), {"format": "xml"}, "unknown output format 'xml'"),
    ],
)
def test_bad_values_are_refused(
    options: Options, file_values: dict[str, str], problem: str
) -> None:
    with pytest.raises(CliError, match=problem):
        resolve_config(options, {}, file_values, None)


def test_the_cli_does_not_load_the_server() -> None:
    """Every proxy-client command starts a Python process: it must not import the gateway (the
    `oauthproxy` package loads the whole server, ~0.7 s, on every call)."""
    probe = (
        "import sys, cli.main; print(sorted(m for m in sys.modules if m.startswith('oauthproxy')))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert shown.stdout.strip() == "[]"


CERTIFICATE: dict[str, Any] = {
    "cert_name": "web",
    "domains": ["web.example.com"],
    "status": "error",
    "last_error": "cannot reach the ACME server: " + "x" * 200 + "\nsecond line",
    "fullchain_pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" * 2,
    "fingerprint": "ab" * 32,
    "owner_token_hash": "sha256:" + "c" * 64,
    "email": "ops@example.com",
    "acme_directory_url": "https://acme.example.com/directory",
    "expires_at": None,
    "issued_at": None,
    "serial_number": None,
    "created_by": "admin",
    "created_at": "2025-03-10T11:00:00Z",
    "failures": 3,
    "next_attempt_at": "2025-03-10T13:00:00Z",
    "self_signed": False,
}


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (CERTIFICATE["fullchain_pem"], "PEM: 2 certificates (-o json has it)"),
        ("-----BEGIN PUBLIC KEY-----\nMII\n-----END PUBLIC KEY-----",
         "PEM: 1 public key (-o json has it)"),
        ("plain text", "plain text"),
    ],
)  # fmt: skip
def test_tables_never_print_pem(value: str, shown: str) -> None:
    assert cell(value, "", NOW).plain == shown


def test_a_record_shows_its_key_fields_and_counts_the_rest() -> None:
    text = text_of(render_table(CERTIFICATE, now=NOW))
    fields = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]
    assert fields[:3] == ["cert_name", "domains", "status"] and "last_error" in fields
    assert "fingerprint" not in fields and "BEGIN" not in text
    assert text.rstrip().endswith("8 more fields: --all shows every field, -o json the data")
    everything = text_of(render_table(CERTIFICATE, now=NOW, all_fields=True))
    assert "fingerprint" in everything and "more fields" not in everything
    assert "PEM: 2 certificates" in everything and "BEGIN" not in everything
    assert "second line" in everything  # a record shows its error whole


def test_list_cells_hold_one_line_and_long_errors_end_in_an_ellipsis() -> None:
    text = text_of(render_table([CERTIFICATE], now=NOW), width=200)
    row = [line for line in text.splitlines() if "web.example.com" in line]
    assert len(row) == 1
    assert "cannot reach the ACME server: xxx" in row[0] and "… │" in row[0]
    assert "second line" not in text


def test_a_legend_names_only_the_marks_shown() -> None:
    certificates = text_of(
        render_table([CERTIFICATE, {**CERTIFICATE, "status": "active"}], now=NOW)
    )
    assert "Legend: ● active · ✗ failed, expired or stopped" in certificates
    tokens = text_of(render_table(TOKENS, now=NOW))
    assert "Legend" not in tokens  # a ✗ in a yes/no column is no status mark
    one_proxy = text_of(render_table(PROXIES[1:], now=NOW))
    assert "Legend: HTTPS⚠ on, but no certificate yet: HTTP only (just cert-list)" in one_proxy
    assert "HTTPS✓ served" not in one_proxy


def test_a_short_record_shows_every_field() -> None:
    deleted = {"cert_name": "web", "deleted": True, "proxies_updated": []}
    text = text_of(render_table(deleted, now=NOW))
    assert "proxies_updated" in text and "more field" not in text


def test_a_list_summarises_pem_too() -> None:
    rows = [{"job": "a", "pem": CERTIFICATE["fullchain_pem"]}]
    text = text_of(render_table(rows, now=NOW))
    assert "PEM: 2 certificates" in text and "BEGIN" not in text
