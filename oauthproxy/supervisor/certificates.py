"""Which certificate serves a hostname, and the TLS contexts built from certificates."""

from __future__ import annotations

import hashlib
import logging
import ssl
from collections.abc import Iterable

from oauthproxy.models.certificates import Certificate
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.proxy.tls import HostContext, host_context
from oauthproxy.supervisor.decide import Wanted
from oauthproxy.tenancy.certificates import links

log = logging.getLogger(__name__)


class CertificateIndex:
    """Every certificate by name and by domain, for a full reconcile."""

    def __init__(self, certificates: Iterable[Certificate]) -> None:
        self._by_name = {c.cert_name: c for c in certificates}
        self._by_domain: dict[str, list[Certificate]] = {}
        for certificate in self._by_name.values():
            for domain in certificate.domains:
                self._by_domain.setdefault(domain, []).append(certificate)

    def for_proxy(self, target: ProxyTarget) -> Certificate | None:
        """The certificate the proxy names, else one of its owner's covering its hostname (an
        issued one first): another owner's certificate for the same name never serves it."""
        if target.cert_name:
            return self._by_name.get(target.cert_name)
        own = [c for c in self._by_domain.get(target.hostname, []) if links(c, target)]
        return max(reversed(own), key=lambda c: c.issued, default=None)


def _identity(certificate: Certificate) -> str:
    return hashlib.sha256((certificate.fullchain_pem or "").encode()).hexdigest()


class HostContexts:
    """One TLS context per hostname, rebuilt only when its certificate changes."""

    def __init__(self, *, http2: bool = True) -> None:
        self._contexts: dict[str, tuple[str, HostContext]] = {}
        self._http2 = http2
        """Offer `h2` in ALPN (HTTP2_ENABLED)."""

    def context(self, wanted: Wanted) -> HostContext | None:
        certificate = wanted.certificate
        hostname = wanted.target.hostname
        if certificate is None or not certificate.fullchain_pem or not certificate.private_key_pem:
            self.forget(hostname)
            return None
        identity = _identity(certificate)
        cached = self._contexts.get(hostname)
        if cached is not None and cached[0] == identity:
            return cached[1]
        try:
            context = host_context(
                hostname,
                certificate.fullchain_pem,
                certificate.private_key_pem,
                http2=self._http2,
            )
        except (ssl.SSLError, ValueError) as error:
            log.error("certificate %s cannot serve %s: %s", certificate.cert_name, hostname, error)
            return None
        self._contexts[hostname] = (identity, context)
        return context

    def forget(self, hostname: str) -> None:
        self._contexts.pop(hostname, None)
