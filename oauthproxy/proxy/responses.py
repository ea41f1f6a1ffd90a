"""Responses the gateway writes itself: errors (JSON for API clients, HTML for browsers)."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass

from oauthproxy.errors import StorageTimeout, StorageUnavailable
from oauthproxy.proxy.headers import Headers


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Headers
    body: bytes
    error: str = ""
    """Why the gateway answered itself (`unknown_host`, `invalid_token`...), for the log."""


_TITLES = {
    404: "Not Found",
    421: "Misdirected Request",
    400: "Bad Request",
    502: "Bad Gateway",
    504: "Gateway Timeout",
    503: "Service Unavailable",
}


def _wants_html(accept: bytes) -> bool:
    return b"text/html" in accept and b"application/json" not in accept


def error_reply(status: int, error: str, detail: str, *, accept: bytes = b"") -> Reply:
    """An error for the client: a small HTML page for browsers, JSON for everyone else."""
    if _wants_html(accept):
        title = f"{status} {_TITLES.get(status, 'Error')}"
        page = (
            f"<!doctype html><html><head><title>{title}</title></head><body>"
            f"<h1>{title}</h1><p>{html.escape(detail)}</p><hr><p>oauthproxy</p></body></html>"
        )
        html_type = [(b"content-type", b"text/html; charset=utf-8")]
        return Reply(status, html_type, page.encode(), error)
    body = json.dumps({"error": error, "detail": detail}).encode()
    return Reply(status, [(b"content-type", b"application/json")], body, error)


def storage_error(error: StorageUnavailable, what: str) -> Reply:
    """The 503 for a request the data plane could not answer without Redis: `what` (plural)
    waits for Redis no longer than API_REDIS_TIMEOUT, or Redis failed."""
    if isinstance(error, StorageTimeout):
        detail = f"{what} are unavailable: Redis did not answer within API_REDIS_TIMEOUT"
        return error_reply(503, "storage_timeout", detail)
    return error_reply(503, "storage_unavailable", f"{what} are unavailable right now")


def redirect_reply(location: str) -> Reply:
    body = f"Moved to {location}\n".encode()
    headers = [(b"location", location.encode()), (b"content-type", b"text/plain")]
    return Reply(301, headers, body, "https_redirect")


@dataclass(frozen=True)
class Unserved:
    """A hostname that has a proxy but no instance, and why (its answer instead of
    `unknown_host`, which would tell the user no proxy exists)."""

    error: str
    detail: str

    def reply(self, accept: bytes) -> Reply:
        return error_reply(404, self.error, self.detail, accept=accept)


def unknown_host(host: str, accept: bytes) -> Reply:
    return error_reply(404, "unknown_host", f"no proxy is configured for {host!r}", accept=accept)
