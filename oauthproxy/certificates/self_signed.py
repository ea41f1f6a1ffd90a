"""Self-signed certificates for local use: `SELF_SIGNED_CN` as the subject, the domains as the
subject alternative names, valid for `SELF_SIGNED_DAYS`. Blocking (key generation): call from a
thread."""

from __future__ import annotations

import functools
from datetime import timedelta

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from oauthproxy.certificates.pem import (
    Issued,
    common_name,
    describe,
    new_certificate_key,
    now,
    private_key_pem,
    subject_alternative_names,
)
from oauthproxy.settings import Settings

BACKDATE = timedelta(minutes=5)
"""Valid a little before now, so a client whose clock is slightly behind accepts it."""


def make_self_signed(
    domains: list[str], *, cn: str, days: int, key_bits: int, key_type: str = "rsa"
) -> Issued:
    """`key_type` and `key_bits` as `CERTIFICATE_KEY_TYPE` and `RSA_KEY_SIZE` say."""
    key = new_certificate_key(key_type, key_bits)
    subject = common_name(cn)
    start = now() - BACKDATE
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(subject_alternative_names(domains), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    chain = certificate.public_bytes(serialization.Encoding.PEM).decode()
    return describe(chain, private_key_pem(key))


async def self_signed_for(
    settings: Settings, domains: list[str], limiter: trio.CapacityLimiter | None = None
) -> Issued:
    """A self-signed certificate for `domains` with the gateway's settings, made in a thread
    (one of `limiter`'s: the certificate manager's, CERT_GEN_MAX_WORKERS)."""
    make = functools.partial(
        make_self_signed,
        domains,
        cn=settings.self_signed_cn,
        days=settings.self_signed_days,
        key_bits=settings.rsa_key_size,
        key_type=settings.certificate_key_type,
    )
    return await trio.to_thread.run_sync(make, limiter=limiter)
