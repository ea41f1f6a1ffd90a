"""One request as the log sees it: a record the data plane fills in, turned into fields later.

The data plane only creates a `RequestEntry` and sets attributes on it (raw bytes, no decoding,
no formatting): everything that costs something (decoding, redaction, the field strings) runs in
the flush task, off the request path. Nothing here does I/O.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from urllib.parse import unquote_plus

REDACTED = "REDACTED"

SECRET_NAMES = re.compile(
    r"token|code|secret|password|passwd|pwd|key|state|auth|session|sig|credential|jwt|"
    r"assertion|verifier|nonce|ticket|cookie|csrf|^request$",
    re.IGNORECASE,
)
"""Query parameter names whose values are never written (access_token, code, client_secret,
api_key, state, code_verifier, X-Amz-Signature, the consent page's `request` handle, ...). A
false positive costs a redacted value."""

FIELDS = (
    "timestamp", "client_ip", "scheme", "hostname", "method", "request_path", "status",
    "bytes_in", "bytes_out", "duration_ms", "upstream", "route_id", "user", "client_id",
    "tls_version", "gateway_reason", "kind", "protocol",
)  # fmt: skip
"""Every field of a stored entry, in display order."""


@dataclass(slots=True, eq=False)
class RequestEntry:
    """One exchange (a request, or a WebSocket/SSE stream) while it is being answered."""

    started: float
    """Wall-clock seconds since the epoch when its head arrived."""
    clock: float
    """`time.perf_counter()` at the same moment (durations do not jump with the wall clock)."""
    client_ip: str
    scheme: bytes
    host: str
    method: bytes
    target: bytes
    """As received, query string included: redacted only when the entry is written."""
    status: int = 0
    reason: str = ""
    """Why the gateway answered itself (`unknown_host`, `invalid_token`, `bad_gateway`, ...);
    empty when the upstream answered."""
    upstream: str = ""
    route_id: str = ""
    user: str = ""
    client_id: str = ""
    tls_version: str = ""
    kind: str = "http"
    """http, websocket (a 101 splice) or sse (a text/event-stream response)."""
    bytes_in: int = 0
    bytes_out: int = 0
    duration: float = 0.0
    """Seconds, set when the exchange ends."""
    version: bytes = b""
    """The request's HTTP version as its head gave it (b"1.1", b"1.0", b"2"); empty for an
    event, or a request whose head could not be read."""
    sniff: bool = True
    """Whether forwarding looks at the response's type to tell an SSE stream: only the request
    log and the access log show the kind (the metrics count requests of every kind alike)."""


REQUEST_KINDS = frozenset({"http", "websocket", "sse"})
"""Kinds of entries that are requests; any other kind is the name of an event."""


def event(
    name: str,
    *,
    status: int = 200,
    host: str = "",
    client_ip: str = "",
    user: str = "",
    client_id: str = "",
    method: str = "",
    path: str = "",
    detail: str = "",
) -> RequestEntry:
    """An event (an OAuth step, a proxy served or stopped, an admin-API write) as an entry of
    the same log: `kind` is its name (`oauth.token_issued`), `status` sets its level (2xx INFO,
    4xx WARNING, 5xx ERROR), `detail` (in `gateway_reason`) says why it was refused."""
    entry = RequestEntry(
        time.time(), time.perf_counter(), client_ip, b"", host, method.encode(), path.encode()
    )
    entry.kind, entry.status, entry.reason = name, status, detail
    entry.user, entry.client_id = user, client_id
    return entry


def begin(client_ip: str, scheme: bytes, host: str, method: bytes, target: bytes) -> RequestEntry:
    """A new entry, timed from now."""
    return RequestEntry(time.time(), time.perf_counter(), client_ip, scheme, host, method, target)


def redact_target(target: str) -> str:
    """The request target with the values of secret-looking query parameters replaced, and of
    path parameters (`/cart;jsessionid=...`: Tomcat's and Jetty's sessions in the URL). A name
    is judged as the backend reads it, percent-decoded (`access_t%6Fken` is `access_token`),
    and query pairs split on `;` as well as `&` (some servers split there too)."""
    path, mark, query = target.partition("?")
    if ";" in path:
        path = _PATH_PARAMETERS.sub(_redacted_parameter, path)
    return f"{path}?{_SEPARATORS.sub(_redacted_pair, query)}" if mark else path


def needs_redaction(target: str) -> bool:
    """Whether `redact_target` could change `target` (the cheap test, run per logged request)."""
    return "?" in target or ";" in target


_PATH_PARAMETERS = re.compile(r";[^;/]*")
"""A path segment's parameters (`;name=value`, up to the next `;` or `/`)."""


def _redacted_parameter(parameter: re.Match[str]) -> str:
    name, equals, _value = parameter[0][1:].partition("=")
    secret = equals and SECRET_NAMES.search(unquote_plus(name))
    return f";{name}={REDACTED}" if secret else parameter[0]


_SEPARATORS = re.compile(r"[^&;]+")
"""A query's pairs (what lies between `&` and `;`)."""


def _redacted_pair(pair: re.Match[str]) -> str:
    name, equals, _value = pair[0].partition("=")
    secret = equals and SECRET_NAMES.search(unquote_plus(name))
    return f"{name}={REDACTED}" if secret else pair[0]


def path_of(target: str) -> str:
    """The path alone (no query string): what the path filter sees."""
    return target.partition("?")[0]


def stamp(seconds: float) -> str:
    """`seconds` to the microsecond: an entry's timestamp (its key's, and its score)."""
    return f"{seconds:.6f}"


STORED_TARGET_LENGTH = 2048
"""A longer target is stored cut (after redaction), with `…`: a head may hold 64 KiB of one,
and an anonymous flood of them filled the log's Redis to LOG_MAX_REDIS_MEMORY_MB, after which
every entry (the admin's audit events too) was dropped for LOG_RETENTION_HOURS."""


def stored_path(entry: RequestEntry) -> str:
    """The request target as stored: secret-looking query values redacted, cut at
    STORED_TARGET_LENGTH."""
    target = entry.target.decode("latin-1")
    if needs_redaction(target):
        target = redact_target(target)
    return target if len(target) <= STORED_TARGET_LENGTH else target[:STORED_TARGET_LENGTH] + "…"


def protocol_of(version: str) -> str:
    """`HTTP/1.1`, `HTTP/2`, ... for an HTTP version (`1.1`, `2`); empty when there is none."""
    return f"HTTP/{version}" if version else ""


def values_of(entry: RequestEntry) -> tuple[str | int, ...]:
    """The entry's stored values, in `FIELDS` order (secrets redacted); counts stay integers."""
    return (
        stamp(entry.started),
        entry.client_ip,
        entry.scheme.decode("latin-1"),
        entry.host,
        entry.method.decode("latin-1"),
        stored_path(entry),
        entry.status,
        entry.bytes_in,
        entry.bytes_out,
        f"{entry.duration * 1000:.3f}",
        entry.upstream,
        entry.route_id,
        entry.user,
        entry.client_id,
        entry.tls_version,
        entry.reason,
        entry.kind,
        protocol_of(entry.version.decode("latin-1")),
    )


def fields_of(entry: RequestEntry) -> dict[str, str]:
    """The entry as the string fields shown by the API and the access log (secrets redacted)."""
    return {name: str(value) for name, value in zip(FIELDS, values_of(entry), strict=True)}
