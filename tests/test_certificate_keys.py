"""CERTIFICATE_KEY_TYPE: the key every new certificate gets (RSA of RSA_KEY_SIZE bits, or ECDSA
P-256), for self-signed certificates here; ACME orders are in test_certificates_acme.py."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from oauthproxy.certificates.self_signed import make_self_signed
from oauthproxy.proxy.tls import host_context


@pytest.mark.parametrize(
    ("key_type", "kind"), [("rsa", rsa.RSAPrivateKey), ("ecdsa-p256", ec.EllipticCurvePrivateKey)]
)
def test_a_self_signed_certificate_gets_the_key_type_asked_for(
    key_type: str, kind: type[object]
) -> None:
    issued = make_self_signed(
        ["keys.example.com"], cn="test", days=1, key_bits=2048, key_type=key_type
    )
    key = serialization.load_pem_private_key(issued.private_key_pem.encode(), password=None)
    assert isinstance(key, kind)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        assert key.curve.name == "secp256r1"
    leaf = x509.load_pem_x509_certificate(issued.fullchain_pem.encode())
    assert leaf.public_key() == key.public_key()
    served = host_context("keys.example.com", issued.fullchain_pem, issued.private_key_pem)
    assert served.names == frozenset({"keys.example.com"})
