"""The authorization server's Redis state: clients, the login flow, codes and the signing key.

    oauth:client:{id}                  a registered client (expires with OAUTH_CLIENT_LIFETIME)
    oauth:client_document:{sha256}     a fetched Client ID Metadata Document, cached
    oauth:client_documents             ZSET of the cached documents' hashes by expiry (epoch ms):
                                       at most MAX_CACHED_DOCUMENTS, the soonest to expire go
    oauth:state:{state}                an authorization request out at GitHub for a login, and
                                       the browser it is bound to
    oauth:consent:{id}                 a logged-in request waiting for the user's consent
    oauth:code:{sha256}                an authorization code (single use)
    oauth:code_used:{sha256}           a redeemed code → the session it started (replay revokes)
    oauth:signing_key                  the generated RS256 key shared by every replica
    oauth:signing_key:retired          when a configured key replaced it (epoch seconds)
    oauth:register_rate:{ip}           registrations from one client IP in the current window
    oauth:anonymous_rate:{ip}          anonymous requests that store something, from one client IP

Sessions, tokens and the revocation stream are `SessionStore`'s (storage/oauth_sessions.py).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from coredis import PureToken
from pydantic import BaseModel

from oauthproxy.models.oauth import (
    AuthorizationCode,
    OAuthClient,
    PendingConsent,
    PendingLogin,
)
from oauthproxy.storage import keys
from oauthproxy.storage.base import Redis, dump, load, load_many, scan_keys, translate_errors
from oauthproxy.storage.oauth_sessions import SessionStore
from oauthproxy.storage.windows import WindowCount, WindowCounter

__all__ = ["CodeRedemption", "OAuthStore", "WindowCount"]

CODE_REPLAY_MEMORY_MS = 10 * 60 * 1000

MAX_CACHED_DOCUMENTS = 10_000
"""Client metadata documents cached at once, from every client address together. The rate
limit bounds how fast one address adds documents, not how many addresses there are: beyond this
the documents closest to expiry are dropped (and fetched again when used)."""

# Cache a document (KEYS[1], the value ARGV[1] for ARGV[2] ms) and index it (KEYS[2], member
# ARGV[3], scored by its expiry); drop the index's expired members, then the documents closest
# to expiry until at most ARGV[5] remain; the index lives as long as its longest-lived member.
# ARGV[4] is now (ms), ARGV[6] the documents' key prefix.
_CACHE_DOCUMENT = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
local expires = tonumber(ARGV[4]) + tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], expires, ARGV[3])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if over > 0 then
  local dropped = redis.call('ZPOPMIN', KEYS[2], over)
  for index = 1, #dropped, 2 do
    redis.call('DEL', ARGV[6] .. dropped[index])
  end
end
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 0
"""


class CodeRedemption(BaseModel):
    """A code taken (code), replayed (the session it started) or unknown (neither)."""

    code: AuthorizationCode | None = None
    replayed_session_id: str | None = None


@translate_errors
class OAuthStore(SessionStore):
    def __init__(self, redis: Redis) -> None:
        super().__init__(redis)
        self._windows = WindowCounter(redis)
        self._cache_document = redis.register_script(_CACHE_DOCUMENT)

    # --- clients ---------------------------------------------------------------------------

    async def get_client(self, client_id: str) -> OAuthClient | None:
        return load(OAuthClient, await self._redis.get(keys.oauth_client(client_id)))

    async def put_client(self, client: OAuthClient, *, until: datetime | None = None) -> None:
        """Create or replace a client; it expires at `until` when given (a new client not used
        yet, see `keep_client`), else at its `expires_at` when it has one."""
        expires = until or client.expires_at
        await self._redis.set(
            keys.oauth_client(client.client_id),
            dump(client),
            pxat=expires.replace(tzinfo=expires.tzinfo or UTC) if expires else None,
        )

    async def replace_client(self, client: OAuthClient) -> None:
        """Replace a client's record, keeping when it expires (an update does not lengthen the
        life of a client not used yet); only while it exists (a delete meanwhile would otherwise
        leave a record that never expires)."""
        await self._redis.set(
            keys.oauth_client(client.client_id), dump(client), keepttl=True, condition=PureToken.XX
        )

    async def keep_client(self, client: OAuthClient) -> None:
        """A client got its first token: it lives to its `expires_at` (or for ever)."""
        key, expires = keys.oauth_client(client.client_id), client.expires_at
        if expires is None:
            await self._redis.persist(key)
        else:
            milliseconds = int(expires.replace(tzinfo=expires.tzinfo or UTC).timestamp() * 1000)
            await self._redis.pexpireat(key, milliseconds)

    async def delete_client(self, client_id: str) -> bool:
        return bool(await self._redis.delete([keys.oauth_client(client_id)]))

    async def clients(self) -> list[OAuthClient]:
        found = await scan_keys(self._redis, keys.oauth_client("*"))
        return await load_many(self._redis, OAuthClient, found)

    async def cached_document(self, url_hash: str) -> OAuthClient | None:
        return load(OAuthClient, await self._redis.get(keys.oauth_client_document(url_hash)))

    async def cache_document(self, url_hash: str, client: OAuthClient, seconds: int) -> None:
        """Cache a document for `seconds`, keeping at most MAX_CACHED_DOCUMENTS (the ones
        closest to expiry go first)."""
        await self._cache_document(
            keys=[keys.oauth_client_document(url_hash), keys.OAUTH_CLIENT_DOCUMENTS],
            args=[
                dump(client),
                seconds * 1000,
                url_hash,
                int(time.time() * 1000),
                MAX_CACHED_DOCUMENTS,
                keys.oauth_client_document(""),
            ],
        )

    # --- the login flow --------------------------------------------------------------------

    async def put_login(self, state: str, login: PendingLogin, seconds: int) -> None:
        await self._redis.set(keys.oauth_state(state), dump(login), ex=seconds)

    async def get_login(self, state: str) -> PendingLogin | None:
        return load(PendingLogin, await self._redis.get(keys.oauth_state(state)))

    async def take_login(self, state: str) -> PendingLogin | None:
        """The login of `state`, removed in the same step (a state is used once)."""
        return load(PendingLogin, await self._redis.getdel(keys.oauth_state(state)))

    async def put_consent(self, request_id: str, consent: PendingConsent, seconds: int) -> None:
        await self._redis.set(keys.oauth_consent(request_id), dump(consent), ex=seconds)

    async def get_consent(self, request_id: str) -> PendingConsent | None:
        return load(PendingConsent, await self._redis.get(keys.oauth_consent(request_id)))

    async def take_consent(self, request_id: str) -> PendingConsent | None:
        return load(PendingConsent, await self._redis.getdel(keys.oauth_consent(request_id)))

    async def put_code(self, code_hash: str, code: AuthorizationCode, seconds: int) -> None:
        await self._redis.set(keys.oauth_code(code_hash), dump(code), ex=seconds)

    async def redeem_code(self, code_hash: str, session_id: str) -> CodeRedemption:
        """Take a code for the session `session_id` is about to start; a replayed code names
        the session its first use started."""
        code, first_session = await self._take(
            keys.oauth_code(code_hash),
            keys.oauth_code_used(code_hash),
            session_id,
            CODE_REPLAY_MEMORY_MS,
        )
        return CodeRedemption(
            code=AuthorizationCode.model_validate_json(code) if code else None,
            replayed_session_id=first_session,
        )

    # --- rate limits -----------------------------------------------------------------------

    async def count_registration(self, client_ip: str, window_ms: int) -> WindowCount:
        """Count a registration from `client_ip` in its fixed window of `window_ms` (one atomic
        step, so every replica counts in the same window)."""
        return await self._windows.count(keys.oauth_register_rate(client_ip), window_ms)

    async def count_anonymous(self, client_ip: str, window_ms: int) -> WindowCount:
        """Count an anonymous request from `client_ip` that stores something (a login start, a
        client-document fetch) in its fixed window."""
        return await self._windows.count(keys.oauth_anonymous_rate(client_ip), window_ms)

    # --- the signing key -------------------------------------------------------------------

    async def signing_key(self) -> str | None:
        """The generated private key (PEM), if one was made."""
        return await self._redis.get(keys.OAUTH_SIGNING_KEY)

    async def signing_key_retired(self, now: float) -> float:
        """When a configured key first replaced the generated one (`now` if that is now): the
        generated key is trusted for one access-token lifetime more, then never again."""
        await self._redis.set(keys.OAUTH_SIGNING_KEY_RETIRED, repr(now), condition=PureToken.NX)
        stored = await self._redis.get(keys.OAUTH_SIGNING_KEY_RETIRED)
        return float(stored) if stored is not None else now

    async def offer_signing_key(self, pem: str) -> str:
        """Store `pem` unless a replica stored one first; the key everyone uses from now on."""
        await self._redis.set(keys.OAUTH_SIGNING_KEY, pem, condition=PureToken.NX)
        stored = await self._redis.get(keys.OAUTH_SIGNING_KEY)
        return stored if stored is not None else pem
