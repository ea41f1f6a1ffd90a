"""What the supervisor must do to make the running instances match the desired proxies. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from oauthproxy.models.certificates import Certificate
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.proxy.responses import Unserved
from oauthproxy.tenancy.certificates import links


@dataclass(frozen=True)
class Wanted:
    """A proxy as it should run: its target, and the certificate it serves HTTPS with (if any)."""

    target: ProxyTarget
    certificate: Certificate | None = None


@dataclass(frozen=True)
class Start:
    wanted: Wanted


@dataclass(frozen=True)
class Update:
    wanted: Wanted


@dataclass(frozen=True)
class Stop:
    hostname: str


Action = Start | Update | Stop


def served(wanted: Wanted) -> bool:
    """Whether a proxy gets an instance: enabled, and reachable over HTTP or HTTPS."""
    target = wanted.target
    return target.enabled and (target.enable_http or wanted.certificate is not None)


def unserved(wanted: Wanted) -> Unserved | None:
    """Why a proxy gets no instance, in the words its visitors get; None when it is served."""
    target = wanted.target
    if not target.enabled:
        return Unserved("proxy_disabled", f"the proxy for {target.hostname!r} is disabled")
    if served(wanted):
        return None
    detail = (
        f"{target.hostname!r} is served over HTTPS only (enable_http is off), "
        "and it has no certificate yet"
    )
    return Unserved("http_disabled", detail)


def usable_certificate(target: ProxyTarget, certificate: Certificate | None) -> Certificate | None:
    """`certificate` if this proxy can serve HTTPS with it: HTTPS on, issued, naming the host,
    and of the proxy's own owner (a certificate never serves another owner's proxy)."""
    if not target.enable_https or certificate is None or not links(certificate, target):
        return None
    if not (certificate.fullchain_pem and certificate.private_key_pem):
        return None
    return certificate if target.hostname in certificate.domains else None


def decide(
    desired: Mapping[str, Wanted],
    running: Mapping[str, Wanted],
    hostnames: set[str] | None = None,
) -> list[Action]:
    """Actions for `hostnames` (all known ones when None), in a stable order.

    Idempotent: applying the actions and deciding again yields nothing, so a repeated or
    reordered event can never start an instance twice or leave one behind.
    """
    names = hostnames if hostnames is not None else set(desired) | set(running)
    actions: list[Action] = []
    for hostname in sorted(names):
        want = desired.get(hostname)
        have = running.get(hostname)
        if want is not None and served(want):
            if have is None:
                actions.append(Start(want))
            elif have != want:
                actions.append(Update(want))
        elif have is not None:
            actions.append(Stop(hostname))
    return actions
