"""What the supervisor must do to make the running instances match the desired proxies. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from oauthproxy.models.proxies import ProxyTarget


@dataclass(frozen=True)
class Start:
    target: ProxyTarget


@dataclass(frozen=True)
class Update:
    target: ProxyTarget


@dataclass(frozen=True)
class Stop:
    hostname: str


Action = Start | Update | Stop


def served(target: ProxyTarget) -> bool:
    """Whether a proxy gets an instance on the plain-HTTP port."""
    return target.enabled and target.enable_http


def decide(
    desired: Mapping[str, ProxyTarget],
    running: Mapping[str, ProxyTarget],
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
