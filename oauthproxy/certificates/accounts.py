"""ACME accounts: one key per directory and email, created once and kept in Redis
(`acme:account:{directory-hash}:{email}`), so every replica signs in as the same account."""

from __future__ import annotations

import trio

from oauthproxy.certificates import acme
from oauthproxy.certificates.pem import new_private_key, private_key_pem
from oauthproxy.models.certificates import AcmeAccount
from oauthproxy.storage.acme_accounts import AcmeAccountRepository

ACCOUNT_KEY_BITS = 2048


def _new_key_pem() -> str:
    return private_key_pem(new_private_key(ACCOUNT_KEY_BITS))


async def account_for(
    accounts: AcmeAccountRepository, directory_url: str, email: str
) -> AcmeAccount:
    """The stored account, or a new one with a fresh key (the first writer wins a race)."""
    stored = await accounts.get(directory_url, email)
    if stored is not None:
        return stored
    key_pem = await trio.to_thread.run_sync(_new_key_pem)
    return await accounts.create(
        AcmeAccount(directory_url=directory_url, email=email, key_pem=key_pem)
    )


async def sign_in(
    accounts: AcmeAccountRepository, directory_url: str, email: str, ca_bundle: str | None
) -> acme.AcmeSession:
    """A session on `directory_url` as the account of `email`, registering it if needed."""
    account = await account_for(accounts, directory_url, email)
    session = await acme.blocking(acme.connect, directory_url, account.key_pem, email, ca_bundle)
    if session.account_uri != account.uri:
        await accounts.put(account.model_copy(update={"uri": session.account_uri}))
    return session
