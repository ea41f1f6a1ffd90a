"""Certificates (`cert:{name}`) and their generation status (`cert:status:{name}`)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from oauthproxy.models.common import Hostname, Name, OwnerHash, Record, utcnow


class CertificateStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    RENEWING = "renewing"
    ERROR = "error"
    EXPIRED = "expired"


class Certificate(Record):
    cert_name: Name
    domains: list[Hostname] = Field(min_length=1, max_length=100)
    email: str | None = None
    acme_directory_url: str | None = None
    status: CertificateStatus = CertificateStatus.PENDING
    expires_at: datetime | None = None
    issued_at: datetime | None = None
    fingerprint: str | None = None
    fullchain_pem: str | None = None
    private_key_pem: str | None = None
    owner_token_hash: OwnerHash | None = None
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    last_error: str | None = None
    self_signed: bool = False


class GenerationStatus(Record):
    cert_name: str
    status: str
    message: str = ""
    updated_at: datetime = Field(default_factory=utcnow)
