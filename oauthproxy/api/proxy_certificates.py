"""Smart certificate handling for a new HTTPS proxy that names no certificate.

- A certificate already covers the hostname (`cert:domain:{hostname}`): the proxy names it.
- Otherwise one is ordered, `proxy-{hostname with dots as dashes}`, with the request's
  `cert_email`, else the token's, else ADMIN_EMAIL. The proxy serves HTTP at once; when the
  certificate is issued the proxy gets its name and upgrades to HTTPS (`certificate_ready`).
- No email known (or no certificate manager): nothing is ordered.

The outcome is reported in the response headers `X-Certificate-Action` (`reused`, `ordered`,
`skipped`) and `X-Certificate-Detail`, so the body stays the proxy record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from quart import current_app

from oauthproxy.api.certificates import acme_email, new_acme_certificate, order
from oauthproxy.api.ownership import storage
from oauthproxy.api.state import app_state
from oauthproxy.errors import Conflict
from oauthproxy.models.proxies import ProxyTarget, ProxyTargetCreate

MAX_NAME = 64
PREFIX = "proxy-"


class Action(StrEnum):
    NONE = "none"
    REUSED = "reused"
    ORDERED = "ordered"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Plan:
    action: Action
    detail: str = ""
    cert_name: str | None = None
    email: str | None = None

    def headers(self) -> dict[str, str]:
        if self.action is Action.NONE:
            return {}
        return {"X-Certificate-Action": self.action.value, "X-Certificate-Detail": self.detail}

    def applied_to(self, target: ProxyTarget) -> ProxyTarget:
        """The proxy as stored: naming a reused certificate, unchanged otherwise."""
        if self.action is Action.REUSED:
            return target.model_copy(update={"cert_name": self.cert_name})
        return target


def certificate_name(hostname: str) -> str:
    """`proxy-api-example-com`; a long hostname is shortened with a hash to stay a valid name."""
    name = PREFIX + hostname.replace(".", "-")
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(hostname.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9]}-{digest}"


def _reuse(name: str) -> Plan:
    return Plan(Action.REUSED, f"serving HTTPS with certificate {name}", cert_name=name)


async def plan(target: ProxyTarget, data: ProxyTargetCreate) -> Plan:
    """What to do about the new proxy's certificate (nothing is written here)."""
    if not target.enable_https or target.cert_name is not None:
        return Plan(Action.NONE)
    certificates = storage().certificates
    covering = await certificates.name_for_domain(target.hostname)
    if covering is not None:
        return _reuse(covering)
    name = certificate_name(target.hostname)
    existing = await certificates.get(name)
    if existing is not None:
        if target.hostname in existing.domains:
            return _reuse(name)
        return Plan(Action.SKIPPED, f"certificate {name} exists for other domains")
    return _ordering(name, acme_email(data.cert_email))


def _ordering(name: str, email: str | None) -> Plan:
    if email is None:
        return Plan(
            Action.SKIPPED,
            "no certificate ordered: no email (give cert_email, set the token's cert_email, "
            "or set ADMIN_EMAIL); the proxy serves HTTP only",
        )
    if app_state(current_app).certificates is None:
        return Plan(Action.SKIPPED, "no certificate ordered: the certificate manager is off")
    return Plan(Action.ORDERED, f"ordering certificate {name} for {email}", name, email)


async def carry_out(chosen: Plan, target: ProxyTarget, *, staging: bool) -> Plan:
    """Order the certificate the plan calls for, once the proxy exists."""
    if chosen.action is not Action.ORDERED or chosen.cert_name is None or chosen.email is None:
        return chosen
    certificate = new_acme_certificate(
        chosen.cert_name, [target.hostname], chosen.email, staging=staging
    )
    try:
        await order(certificate)
    except Conflict:
        return _reuse(chosen.cert_name)
    return chosen
