"""Keys, CSRs and what an issued certificate says about itself. Blocking: call from threads.

Private keys exist only as PEM strings in memory and in Redis; nothing here touches the disk.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PUBLIC_EXPONENT = 65537


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as stored on the certificate record."""

    fullchain_pem: str
    private_key_pem: str
    issued_at: datetime
    expires_at: datetime
    serial_number: str
    fingerprint: str

    def fields(self) -> dict[str, object]:
        return {
            "fullchain_pem": self.fullchain_pem,
            "private_key_pem": self.private_key_pem,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "serial_number": self.serial_number,
            "fingerprint": self.fingerprint,
        }


CertificateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def new_private_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=bits)


def new_certificate_key(key_type: str, rsa_bits: int) -> CertificateKey:
    """The key of a new certificate (`CERTIFICATE_KEY_TYPE`): ECDSA P-256, or RSA of
    `rsa_bits`. A TLS server signs every full handshake with it, and an ECDSA P-256 signature
    costs a tenth of an RSA-2048 one or less (`openssl speed rsa2048 ecdsap256`)."""
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    return new_private_key(rsa_bits)


def private_key_pem(key: CertificateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("expected an RSA private key")
    return key


def subject_alternative_names(domains: list[str]) -> x509.SubjectAlternativeName:
    return x509.SubjectAlternativeName([x509.DNSName(domain) for domain in domains])


def common_name(value: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value[:64])])


def csr_pem(key: CertificateKey, domains: list[str]) -> bytes:
    """A certificate signing request for `domains` (the first is the common name)."""
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(common_name(domains[0]))
        .add_extension(subject_alternative_names(domains), critical=False)
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


def leaf(fullchain_pem: str) -> x509.Certificate:
    """The first certificate of a chain: the one issued for the domains."""
    return x509.load_pem_x509_certificates(fullchain_pem.encode())[0]


def describe(fullchain_pem: str, key_pem: str) -> Issued:
    """The record fields of an issued chain: its validity, serial and SHA-256 fingerprint."""
    certificate = leaf(fullchain_pem)
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
    return Issued(
        fullchain_pem=fullchain_pem,
        private_key_pem=key_pem,
        issued_at=certificate.not_valid_before_utc.astimezone(UTC),
        expires_at=certificate.not_valid_after_utc.astimezone(UTC),
        serial_number=format(certificate.serial_number, "x"),
        fingerprint=f"sha256:{digest}",
    )


def now() -> datetime:
    return datetime.now(UTC)
