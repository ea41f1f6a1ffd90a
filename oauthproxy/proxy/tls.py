"""TLS for the public HTTPS port: contexts built from PEM in memory, SNI picks the instance.

The listener's context has an SNI callback that switches each handshake to the context of the
instance serving that name, or refuses it (`unrecognized_name`): no SNI or an unknown name never
gets another tenant's certificate. Replacing an instance's context (HTTPS upgrade, renewal)
affects new handshakes only; open connections carry on.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Callable, Iterator

from cryptography import x509
from cryptography.x509.oid import NameOID

TLS_HANDSHAKE_TIMEOUT = 10.0


class HostContext(ssl.SSLContext):
    """A server context for one hostname; it remembers which, for after the handshake, and
    which names its certificate covers (a connection may carry requests for any of them)."""

    hostname: str = ""
    names: frozenset[str] = frozenset()


def certificate_names(fullchain_pem: str) -> frozenset[str]:
    """The DNS names (lower-case, wildcards as `*.example.com`) the chain's first certificate
    is for: its subject alternative names, else its common name."""
    certificate = x509.load_pem_x509_certificate(fullchain_pem.encode())
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = extension.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        attributes = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        names = [str(attribute.value) for attribute in attributes]
    return frozenset(name.lower().rstrip(".") for name in names)


def covers(names: frozenset[str], hostname: str) -> bool:
    """Whether a certificate for `names` is valid for `hostname` (RFC 6125: a wildcard stands
    for exactly one whole left-most label)."""
    if hostname in names:
        return True
    label, dot, parent = hostname.partition(".")
    return bool(label and dot and parent) and f"*.{parent}" in names


@contextlib.contextmanager
def _memory_file(content: bytes) -> Iterator[str]:
    """A path to `content` held in memory only (memfd): private keys never touch a disk."""
    descriptor = os.memfd_create("oauthproxy-tls", os.MFD_CLOEXEC)
    try:
        os.write(descriptor, content)
        yield f"/proc/self/fd/{descriptor}"
    finally:
        os.close(descriptor)


ALPN_HTTP2 = ("h2", "http/1.1")
ALPN_HTTP1 = ("http/1.1",)


def alpn(*, http2: bool) -> tuple[str, ...]:
    """The protocols offered in ALPN, the server's choice first (HTTP2_ENABLED)."""
    return ALPN_HTTP2 if http2 else ALPN_HTTP1


def _server_context(
    cls: type[ssl.SSLContext] = ssl.SSLContext, *, http2: bool = True
) -> ssl.SSLContext:
    context = cls(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # a client may not renegotiate (TLS 1.2): a way to make the server sign again and again,
    # and what lets `ServerTLSStream` write without reading first
    context.options |= ssl.OP_NO_RENEGOTIATION
    # one TLS 1.3 session ticket per handshake (OpenSSL sends two unless told): a returning
    # client needs one, each resumption brings a new one, and Go (Caddy) sends one too; each
    # ticket costs ~15 µs of sealing (OpenSSL 3.0) and ~270 bytes. (The listener's count is
    # the one used: OpenSSL takes it when the connection is made, before the SNI switch.)
    context.num_tickets = 1
    context.set_alpn_protocols(list(alpn(http2=http2)))
    return context


def host_context(
    hostname: str, fullchain_pem: str, private_key_pem: str, *, http2: bool = True
) -> HostContext:
    """The context that serves `hostname` with this certificate chain and key. (After the SNI
    callback swaps it in, its ALPN list is the one the handshake answers from.)"""
    context = _server_context(HostContext, http2=http2)
    assert isinstance(context, HostContext)
    with _memory_file(
        (fullchain_pem.strip() + "\n" + private_key_pem.strip() + "\n").encode()
    ) as path:
        context.load_cert_chain(path)
    context.hostname = hostname
    context.names = certificate_names(fullchain_pem) | {hostname}
    return context


def listener_context(
    contexts: Callable[[str], HostContext | None], *, http2: bool = True
) -> ssl.SSLContext:
    """The HTTPS listener's context: every handshake is handed to `contexts(server_name)`."""
    context = _server_context(http2=http2)

    def choose(ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> int | None:
        chosen = contexts(server_name.lower()) if server_name else None
        if chosen is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        ssl_object.context = chosen
        return None

    context.sni_callback = choose
    return context
