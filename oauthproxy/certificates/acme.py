"""The one module that talks to an ACME v2 server, through the `acme` package (certbot's).

`acme` is blocking (requests): every call goes through `blocking()`, which runs it in a worker
thread and turns the package's errors, and the network's, into `AcmeError`. The functions here
are small steps; the order of the steps (and the waiting between them) lives in `issuer.py`.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar, cast

import josepy
import requests
import trio
from acme import challenges, client, errors, messages
from josepy.jwk import JWKRSA

from oauthproxy.certificates.pem import load_private_key
from oauthproxy.errors import GatewayError

P = ParamSpec("P")
T = TypeVar("T")

USER_AGENT = "oauthproxy"
NETWORK_TIMEOUT_SECONDS = 30
MAX_MESSAGE = 500


class AcmeError(GatewayError):
    """The ACME server refused, failed, or could not be reached; `str()` says which and why."""


@dataclass(frozen=True)
class AcmeSession:
    """A client of one ACME directory, signed in with one account key."""

    client: client.ClientV2
    account_key: JWKRSA
    account_uri: str


@dataclass(frozen=True)
class Http01:
    """One challenge to answer: serve `validation` at /.well-known/acme-challenge/`token`."""

    domain: str
    token: str
    validation: str
    body: messages.ChallengeBody
    response: challenges.ChallengeResponse


def _describe(error: Exception) -> str:
    if isinstance(error, requests.RequestException):
        text = f"cannot reach the ACME server: {type(error).__name__}: {error}"
    elif isinstance(error, errors.TimeoutError):
        text = "the ACME server did not finish in time"
    elif isinstance(error, errors.IssuanceError):
        text = f"the ACME server refused to issue: {error.error}"
    else:
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return text[:MAX_MESSAGE]


async def blocking(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run one blocking ACME step in a worker thread; its failures raise `AcmeError`."""
    call = functools.partial(function, *args, **kwargs)
    try:
        return await trio.to_thread.run_sync(call, abandon_on_cancel=True)
    except (errors.Error, requests.RequestException, josepy.errors.Error, ValueError) as error:
        raise AcmeError(_describe(error)) from error


def connect(directory_url: str, key_pem: str, email: str, ca_bundle: str | None) -> AcmeSession:
    """Fetch the directory and register the account (or find it, when the key has one)."""
    key = JWKRSA(key=load_private_key(key_pem))
    network = client.ClientNetwork(
        key,
        user_agent=USER_AGENT,
        timeout=NETWORK_TIMEOUT_SECONDS,
        # requests takes a CA file where `acme` declares a bool: ACME_CA_BUNDLE goes there.
        verify_ssl=cast(bool, ca_bundle) if ca_bundle else True,
    )
    acme = client.ClientV2(client.ClientV2.get_directory(directory_url, network), network)
    registration = messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True)
    try:
        account = acme.new_account(registration)
    except errors.ConflictError as existing:
        account = messages.RegistrationResource(uri=existing.location, body=messages.Registration())
        network.account = account
    return AcmeSession(acme, key, account.uri)


def new_order(session: AcmeSession, csr_pem: bytes) -> messages.OrderResource:
    return session.client.new_order(csr_pem)


def _http01(session: AcmeSession, authorization: messages.AuthorizationResource) -> Http01:
    domain = authorization.body.identifier.value
    for challenge in authorization.body.challenges:
        if isinstance(challenge.chall, challenges.HTTP01):
            response, validation = challenge.response_and_validation(session.account_key)
            token = challenge.chall.encode("token")
            return Http01(domain, token, validation, challenge, response)
    raise AcmeError(f"the ACME server offers no http-01 challenge for {domain}")


def pending_challenges(session: AcmeSession, order: messages.OrderResource) -> list[Http01]:
    """The HTTP-01 challenges still to answer (a reused, valid authorization needs none)."""
    return [
        _http01(session, authorization)
        for authorization in order.authorizations
        if authorization.body.status == messages.STATUS_PENDING
    ]


def answer(session: AcmeSession, challenge: Http01) -> None:
    session.client.answer_challenge(challenge.body, challenge.response)


def authorization_state(
    session: AcmeSession, authorization: messages.AuthorizationResource
) -> messages.AuthorizationResource:
    updated, _response = session.client.poll(authorization)
    return updated


def authorization_failure(authorization: messages.AuthorizationResource) -> str:
    """Why the CA refused a domain, from the challenge errors it reports."""
    domain = authorization.body.identifier.value
    problems = [str(c.error) for c in authorization.body.challenges if c.error is not None]
    reason = "; ".join(problems) or f"authorization {authorization.body.status}"
    return f"validation of {domain} failed: {reason}"[:MAX_MESSAGE]


def finalize(session: AcmeSession, order: messages.OrderResource, seconds: float) -> str:
    """Send the CSR, wait (up to `seconds`) for the certificate; its PEM chain."""
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=seconds)
    finished = session.client.finalize_order(order, deadline)
    if not finished.fullchain_pem:
        raise AcmeError("the ACME server finished the order without a certificate")
    return str(finished.fullchain_pem)


def is_valid(authorization: messages.AuthorizationResource) -> bool:
    return bool(authorization.body.status == messages.STATUS_VALID)


def is_waiting(authorization: messages.AuthorizationResource) -> bool:
    return authorization.body.status in (messages.STATUS_PENDING, messages.STATUS_PROCESSING)


def domain_of(authorization: messages.AuthorizationResource) -> str:
    return str(authorization.body.identifier.value)
