"""`proxy-client cert …`: ACME and self-signed certificates, their status and renewal."""

from __future__ import annotations

from typing import Annotated, Any

from cyclopts import App, Parameter

from cli.client import api_path
from cli.columns import Kind
from cli.commands.values import present
from cli.errors import CliError
from cli.session import AllFields, Session
from cli.waiting import DEFAULT_TIMEOUT, Timeout, Wait, progress_console, wait_for_certificate

ALL_CERTIFICATES = api_path("certificates", "")  # the collection's path ends with a slash

app = App(name="cert", help="Manage certificates (ACME HTTP-01 or self-signed).")

CertName = Annotated[str, Parameter(help="The certificate's name.")]
Domain = Annotated[str, Parameter(help="A hostname the certificate covers.")]
Staging = Annotated[bool, Parameter(help="Order from ACME_STAGING_URL.")]
Email = Annotated[
    str | None,
    Parameter(help="ACME account email (default: the token's, else the gateway's ADMIN_EMAIL)."),
]


def certificate_path(name: str, *rest: str) -> str:
    return api_path("certificates", name, *rest)


def _order(path: str, body: dict[str, Any], email: str | None, session: Session) -> Any:
    return session.api.post(path, {**body, **present(email=email)})


def _show_or_wait(answer: Any, name: str, wait: bool, timeout: float, session: Session) -> None:
    """The API's answer, or with `wait` the certificate once issued (a failure exits 1)."""
    if wait:
        answer = wait_for_certificate(
            session.api, name, timeout=timeout, console=progress_console()
        )
    session.show(answer, kind=Kind.CERTIFICATES)


@app.command
def create(
    name: CertName,
    domain: Domain,
    *,
    staging: Staging = False,
    email: Email = None,
    wait: Wait = False,
    timeout: Timeout = DEFAULT_TIMEOUT,
    session: Session,
) -> None:
    """Order a certificate for one domain; issuance runs in the background (see `status`),
    or in front of you with --wait."""
    body = {"cert_name": name, "domain": domain, "staging": staging}
    _show_or_wait(_order(ALL_CERTIFICATES, body, email, session), name, wait, timeout, session)


@app.command(name="create-multi")
def create_multi(
    name: CertName,
    *domains: Annotated[str, Parameter(help="The hostnames it covers (up to 100).")],
    staging: Staging = False,
    email: Email = None,
    wait: Wait = False,
    timeout: Timeout = DEFAULT_TIMEOUT,
    session: Session,
) -> None:
    """Order one certificate for several domains (--wait: until issued or failed)."""
    if not domains:
        raise CliError("give at least one domain")
    body = {"cert_name": name, "domains": list(domains), "staging": staging}
    accepted = _order(api_path("certificates", "multi-domain"), body, email, session)
    _show_or_wait(accepted, name, wait, timeout, session)


@app.command(name="self-signed")
def self_signed(
    name: CertName,
    *domains: Annotated[str, Parameter(help="The hostnames it covers.")],
    session: Session,
) -> None:
    """Make a self-signed certificate now, for local use."""
    if not domains:
        raise CliError("give at least one domain")
    body = {"cert_name": name, "domains": list(domains)}
    session.show(session.api.post(api_path("certificates", "self-signed"), body))


@app.command(name="list")
def list_certificates(*, session: Session) -> None:
    """List every certificate: status, expiry, last error."""
    session.show(session.api.get(ALL_CERTIFICATES), kind=Kind.CERTIFICATES)


@app.command
def show(
    name: CertName,
    *,
    pem: Annotated[bool, Parameter(help="Print only the certificate chain (PEM).")] = False,
    all_fields: AllFields = False,
    session: Session,
) -> None:
    """Show a certificate: its key fields, every one with --all, its PEM chain only with --pem
    (never its private key)."""
    certificate = session.api.get(certificate_path(name))
    if not pem:
        session.show(certificate, kind=Kind.CERTIFICATES, all_fields=all_fields)
        return
    chain = certificate.get("fullchain_pem")
    if not chain:
        state = certificate.get("status")
        raise CliError(f"certificate {name} has not been issued yet (status: {state})")
    session.output.console.file.write(chain)


@app.command
def status(name: CertName, *, session: Session) -> None:
    """Show what the certificate's issuance is doing, its last error and next retry."""
    session.show(session.api.get(certificate_path(name, "status")))


@app.command
def renew(
    name: CertName, *, wait: Wait = False, timeout: Timeout = DEFAULT_TIMEOUT, session: Session
) -> None:
    """Issue the certificate again now (it keeps serving until the new one is ready);
    --wait: until the new one is issued or failed."""
    renewing = session.api.post(certificate_path(name, "renew"), None)
    if not wait:
        session.show(renewing)
        return
    _show_or_wait(renewing, name, wait, timeout, session)


@app.command
def delete(
    name: CertName,
    *,
    force: Annotated[bool, Parameter(help="No error when there is no such certificate.")] = False,
    session: Session,
) -> None:
    """Delete a certificate; the proxies it served fall back to HTTP."""
    path = certificate_path(name)
    deleted = session.api.request("DELETE", path, also_accept={404} if force else ())
    if deleted.get("error") == "not_found":
        deleted = {"cert_name": name, "deleted": False, "detail": deleted["detail"]}
    session.show(deleted)
