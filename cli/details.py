"""What one record of a kind shows in a table by default: its key fields, about ten rows.

Everything else stays one option away: `--all` on the `show` commands lists every field, and
`-o json` / `-o yaml` print the API's data unchanged. Kinds without an entry here show every
field (they have few), and so does any record that fits in `cli.formatting.FITS` rows.
"""

from __future__ import annotations

from cli.columns import NAME_STYLE, Column, Kind, expiry, proxy_status, service_ports

DETAILS: dict[Kind, tuple[Column, ...]] = {
    Kind.PROXIES: (
        Column("hostname", "hostname", NAME_STYLE),
        Column("target_url", "target_url"),
        Column("listeners", "listeners", derive=proxy_status),
        Column("enabled", "enabled", "bool"),
        Column("cert_name", "cert_name"),
        Column("https_redirect", "https_redirect", "bool"),
        Column("preserve_host_header", "preserve_host_header", "bool"),
        Column("auth_enabled", "auth_enabled", "bool"),
        Column("resource_endpoint", "resource_endpoint"),
        Column("created_by", "created_by"),
        Column("created_at", "created_at", "date"),
    ),
    Kind.CERTIFICATES: (
        Column("cert_name", "cert_name", NAME_STYLE),
        Column("domains", "domains"),
        Column("status", "status", "status"),
        Column("expires", "expires", derive=expiry),
        Column("issued_at", "issued_at", "date"),
        Column("self_signed", "self_signed", "bool"),
        Column("email", "email"),
        Column("last_error", "last_error"),
        Column("next_attempt_at", "next_attempt_at", "date"),
        Column("created_by", "created_by"),
        Column("status_url", "status_url"),
        Column("message", "message"),
    ),
    Kind.SERVICES: (
        Column("service_name", "service_name", NAME_STYLE),
        Column("service_type", "service_type"),
        Column("status", "status", "status"),
        Column("image", "image"),
        Column("target_url", "target_url"),
        Column("ports", "ports", derive=service_ports),
        Column("memory_limit", "memory_limit"),
        Column("cpu_limit", "cpu_limit"),
        Column("description", "description"),
        Column("created_by", "created_by"),
        Column("created_at", "created_at", "date"),
    ),
}
