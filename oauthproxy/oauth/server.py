"""What every endpoint of the authorization server shares: settings, storage, and (loaded on the
first request, once) the signing keys, the token verifier, the TLS trust and the GitHub client."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trio

from oauthproxy.oauth.clients import ClientResolver
from oauthproxy.oauth.github import GitHub
from oauthproxy.oauth.signing import KeySet, load_keys
from oauthproxy.oauth.verify import TokenVerifier
from oauthproxy.proxy.headers import parse_networks
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from oauthproxy.storage.oauth import OAuthStore


@dataclass(frozen=True)
class Prepared:
    keys: KeySet
    verifier: TokenVerifier
    resolver: ClientResolver
    github: GitHub | None


def _trust(ca_bundle: Path | None) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else True


class OAuthServer:
    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage
        self.issuer = settings.oauth_issuer_url
        self.trusted_proxies = parse_networks(settings.trusted_proxies)
        self._prepared: Prepared | None = None
        self._lock = trio.Lock()

    @property
    def store(self) -> OAuthStore:
        return self.storage.oauth

    def endpoint(self, path: str) -> str:
        return f"{self.issuer}{path}"

    async def prepared(self) -> Prepared:
        if self._prepared is None:
            async with self._lock:
                if self._prepared is None:
                    self._prepared = await self._prepare()
        return self._prepared

    async def _prepare(self) -> Prepared:
        settings = self.settings
        keys = await load_keys(self.storage, settings)
        tls = await trio.to_thread.run_sync(_trust, settings.oauth_ca_bundle)
        return Prepared(
            keys=keys,
            verifier=TokenVerifier(self.issuer, keys.public_keys),
            resolver=ClientResolver(self.store, settings.oauth_cimd_allow_loopback, tls),
            github=GitHub.from_settings(settings, tls),
        )
