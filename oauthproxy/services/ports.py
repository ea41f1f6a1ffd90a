"""Which host ports a service may hold: pure rules, no I/O.

The spec's ranges: 9000-9999 and 10000-10999 are the gateway's internal HTTP and HTTPS ports,
11000-65535 the exposed ports of user services. The restricted ports (ssh, smtp, dns, http,
https, mysql, postgres, redis, mongodb) are never given out, whatever the range. Allocation itself
is one Lua script in `storage.ports`, so two replicas can never hand out the same port.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from oauthproxy.tenancy.caller import Refused

INTERNAL_HTTP = range(9000, 10000)
INTERNAL_HTTPS = range(10000, 11000)
EXPOSED = range(11000, 65536)
RESTRICTED = frozenset({22, 25, 53, 80, 443, 3306, 5432, 6379, 27017})


@dataclass(frozen=True)
class PortRanges:
    """What `/ports/available` reports."""

    internal_http: range = INTERNAL_HTTP
    internal_https: range = INTERNAL_HTTPS
    exposed: range = EXPOSED
    restricted: frozenset[int] = RESTRICTED

    def as_json(self) -> dict[str, object]:
        def span(r: range) -> dict[str, int]:
            return {"start": r.start, "end": r.stop - 1}

        return {
            "internal_http": span(self.internal_http),
            "internal_https": span(self.internal_https),
            "exposed": span(self.exposed),
            "restricted": sorted(self.restricted),
        }


def port_problem(port: int) -> str | None:
    """Why a service may not hold host port `port`, or None when it may."""
    if port in RESTRICTED:
        listed = ", ".join(map(str, sorted(RESTRICTED)))
        return f"port {port} is restricted (system reserved: {listed})"
    if port in INTERNAL_HTTP or port in INTERNAL_HTTPS:
        return f"port {port} is in the gateway's internal range 9000-10999"
    if port not in EXPOSED:
        return f"port {port} is outside the exposed range {EXPOSED.start}-{EXPOSED.stop - 1}"
    return None


def check_port(port: int, *, field: str) -> None:
    """Refuse (422 `port_not_allowed`, naming `field`) a host port no service may hold."""
    problem = port_problem(port)
    if problem is not None:
        raise Refused(422, "port_not_allowed", f"{field}: {problem}", field=field)


def token_hash(token: str) -> str:
    """How a port's `source_token` is stored: its SHA-256, never the token itself."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()
