"""OAuth sessions (token families), their access and refresh tokens, and the revocation stream.

    oauth:session:{sid}            the grant: user, client, scope, resources, revoked flag
    oauth:session_tokens:{sid}     SET of the access-token jtis issued in it
    oauth:token:{jti}              an access token's record (expires with the token)
    oauth:refresh:{sha256}         the session's live refresh token
    oauth:refresh_used:{sha256}    a rotated refresh token → its session id (reuse revokes it)
    oauth:user_tokens:{username}   SET of jtis;  oauth:user_sessions:{username}  SET of sids
    oauth:client_sessions:{id}     SET of sids
    oauth:revocations              stream of {jti, exp}, followed by every replica's data plane
    oauth:revoked                  ZSET jti → exp of the revocations in force (a starting replica's)

Index sets are pruned lazily when read: a member whose record expired is dropped. The two sets
of access-token jtis are also pruned as they grow (`ADD_PRUNED`): a client refreshing all day
adds a jti per refresh to sets that live as long as the session, and most are long expired.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import coredis.exceptions
from coredis import PureToken
from coredis.response.types import StreamEntry
from pydantic import BaseModel

from oauthproxy.models.common import utcnow
from oauthproxy.models.oauth import (
    AccessTokenRecord,
    OAuthSession,
    RefreshTokenRecord,
    Revocation,
)
from oauthproxy.storage import keys
from oauthproxy.storage.base import (
    Pipeline,
    Redis,
    atomically,
    dump,
    load,
    load_many,
    scan_keys,
)
from oauthproxy.storage.base import translate_errors as _translate

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

REVOCATIONS_MAX_LENGTH = 100_000

# Take a single-use record (a code, a refresh token) and leave a marker behind, in one step: of
# two concurrent uses exactly one gets the record, and any later use finds the marker.
# ARGV[1]: the marker's value ('' = the record's session_id); ARGV[2]: its lifetime in ms ('' =
# what the record had left). Answers {record, ''} or {'', marker or ''}.
TAKE_ONCE = """
local record = redis.call('GET', KEYS[1])
if record then
  local ttl = tonumber(ARGV[2]) or redis.call('PTTL', KEYS[1])
  local marker = ARGV[1]
  if marker == '' then marker = cjson.decode(record)['session_id'] end
  redis.call('DEL', KEYS[1])
  if ttl > 0 then redis.call('SET', KEYS[2], marker, 'PX', ttl)
  else redis.call('SET', KEYS[2], marker) end
  return {record, ''}
end
return {'', redis.call('GET', KEYS[2]) or ''}
"""


PRUNE_SAMPLE = 3
"""Members of a jti set checked each time one is added (`ADD_PRUNED`)."""

# Add a jti to an index set, and drop those of ARGV[3] other members picked at random whose
# record (ARGV[2] .. jti) is gone. Each add removes PRUNE_SAMPLE times the set's share of dead
# members, so that share settles below 1 / PRUNE_SAMPLE: the set stays within about 1.5 times
# the tokens that are still alive, at a constant cost per add, whatever the session's length.
ADD_PRUNED = """
redis.call('SADD', KEYS[1], ARGV[1])
for _, member in ipairs(redis.call('SRANDMEMBER', KEYS[1], tonumber(ARGV[3]))) do
  if member ~= ARGV[1] and redis.call('EXISTS', ARGV[2] .. member) == 0 then
    redis.call('SREM', KEYS[1], member)
  end
end
return 0
"""


class RefreshRotation(BaseModel):
    """The outcome of presenting a refresh token: rotated (record), reused (session_id) or
    unknown (neither)."""

    record: RefreshTokenRecord | None = None
    reused_session_id: str | None = None


def _at(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _extend(pipe: Pipeline, key: str, until: datetime) -> None:
    """Let an index set live at least until `until` (never shortening it)."""
    milliseconds = int(_at(until).timestamp() * 1000)
    pipe.pexpireat(key, milliseconds, condition=PureToken.NX)
    pipe.pexpireat(key, milliseconds, condition=PureToken.GT)


REVOKED_KEPT_SECONDS = 120
"""How long past its expiry a revocation stays in `oauth:revoked` (more than the verifier's
leeway: a token is accepted up to LEEWAY_SECONDS after it expires)."""


def queue_revocation(pipe: Pipeline, record: AccessTokenRecord) -> None:
    """Mark the record revoked and publish it on the stream and in `oauth:revoked`, in the
    caller's transaction. The stream is trimmed by length (about REVOCATIONS_MAX_LENGTH): one
    user's flood of revocations (refresh many times, then revoke the session) pushed older ones
    out of it, and a replica started afterwards accepted those tokens again; the set, trimmed
    by expiry, keeps every one still in force."""
    expires = _at(record.expires_at).timestamp()
    pipe.set(
        keys.oauth_token(record.jti),
        dump(record.model_copy(update={"revoked": True})),
        keepttl=True,
    )
    pipe.zadd(keys.OAUTH_REVOKED, {record.jti: expires})
    pipe.zremrangebyscore(keys.OAUTH_REVOKED, 0, time.time() - REVOKED_KEPT_SECONDS)
    pipe.xadd(
        keys.OAUTH_REVOCATIONS,
        {"jti": record.jti, "exp": str(int(_at(record.expires_at).timestamp()))},
        trim_strategy=PureToken.MAXLEN,
        threshold=REVOCATIONS_MAX_LENGTH,
        trim_operator=PureToken.APPROXIMATELY,
    )


@_translate
class SessionStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._take_once = redis.register_script(TAKE_ONCE)
        self._add_pruned = redis.register_script(ADD_PRUNED)

    # --- writing ---------------------------------------------------------------------------

    async def start(
        self,
        session: OAuthSession,
        access: AccessTokenRecord,
        refresh: tuple[str, RefreshTokenRecord] | None,
    ) -> None:
        """Store a new session with its first tokens, all at once."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(
                keys.oauth_session(session.session_id), dump(session), pxat=_at(session.expires_at)
            )
            for index in (
                keys.oauth_user_sessions(session.identity.username),
                keys.oauth_client_sessions(session.client_id),
            ):
                pipe.sadd(index, [session.session_id])
                _extend(pipe, index, session.expires_at)
            self._queue_tokens(pipe, session, access, refresh)

    async def extend(
        self,
        session_id: str,
        access: AccessTokenRecord,
        refresh: tuple[str, RefreshTokenRecord] | None,
    ) -> bool:
        """Add tokens to a live session; False (and nothing written) when it is gone or revoked.

        The session key is watched, so a revocation meanwhile wins over the new tokens."""
        key = keys.oauth_session(session_id)

        async def write(pipe: Pipeline) -> bool:
            session = load(OAuthSession, await self._redis.get(key))
            if session is None or session.revoked:
                return False
            self._queue_tokens(pipe, session, access, refresh)
            return True

        return await atomically(self._redis, [key], write)

    def _queue_tokens(
        self,
        pipe: Pipeline,
        session: OAuthSession,
        access: AccessTokenRecord,
        refresh: tuple[str, RefreshTokenRecord] | None,
    ) -> None:
        # kept as long as the verifier may still accept the token (its leeway past `exp`):
        # revocation walks these records, and one gone at `exp` was never published
        kept = _at(access.expires_at) + timedelta(seconds=REVOKED_KEPT_SECONDS)
        pipe.set(keys.oauth_token(access.jti), dump(access), pxat=kept)
        for index in (
            keys.oauth_session_tokens(session.session_id),
            keys.oauth_user_tokens(session.identity.username),
        ):
            self._add_pruned(
                keys=[index], args=[access.jti, keys.oauth_token(""), PRUNE_SAMPLE], client=pipe
            )
            _extend(pipe, index, session.expires_at)
        if refresh is not None:
            refresh_hash, record = refresh
            pipe.set(keys.oauth_refresh(refresh_hash), dump(record), pxat=_at(record.expires_at))

    async def rotate_refresh(self, refresh_hash: str) -> RefreshRotation:
        """Consume a refresh token (single use); tell a reuse of a rotated one apart."""
        record, session_id = await self._take(
            keys.oauth_refresh(refresh_hash), keys.oauth_refresh_used(refresh_hash)
        )
        return RefreshRotation(
            record=RefreshTokenRecord.model_validate_json(record) if record else None,
            reused_session_id=session_id,
        )

    async def _take(
        self, record_key: str, marker_key: str, marker: str = "", marker_ms: int | None = None
    ) -> tuple[str | None, str | None]:
        """TAKE_ONCE: (the record, None) the first time, (None, the marker) after."""
        reply: list[str] = await self._take_once(
            keys=[record_key, marker_key], args=[marker, "" if marker_ms is None else marker_ms]
        )
        record, found = reply
        return record or None, found or None

    # --- revoking --------------------------------------------------------------------------

    async def revoke_session(self, session_id: str) -> list[str]:
        """Revoke a session and every access token issued in it; the jtis newly revoked."""
        watched = [keys.oauth_session(session_id), keys.oauth_session_tokens(session_id)]
        return await atomically(
            self._redis, watched, lambda pipe: self._queue_session_revocation(pipe, session_id)
        )

    async def _queue_session_revocation(self, pipe: Pipeline, session_id: str) -> list[str]:
        session = load(OAuthSession, await self._redis.get(keys.oauth_session(session_id)))
        if session is not None and not session.revoked:
            revoked = session.model_copy(update={"revoked": True, "revoked_at": utcnow()})
            pipe.set(keys.oauth_session(session_id), dump(revoked), keepttl=True)
        live = [t for t in await self.tokens_of_session(session_id) if not t.revoked]
        for record in live:
            queue_revocation(pipe, record)
        return [record.jti for record in live]

    async def revoke_access_token(self, jti: str) -> bool:
        """Revoke one access token; False when it is unknown, expired or already revoked."""
        key = keys.oauth_token(jti)

        async def write(pipe: Pipeline) -> bool:
            record = load(AccessTokenRecord, await self._redis.get(key))
            if record is None or record.revoked:
                return False
            queue_revocation(pipe, record)
            return True

        return await atomically(self._redis, [key], write)

    async def revoke_client_sessions(self, client_id: str) -> int:
        """Revoke every session of a client (when it is deleted); how many tokens were revoked."""
        revoked = 0
        for session in await self.sessions_of_client(client_id):
            revoked += len(await self.revoke_session(session.session_id))
        return revoked

    async def revoked_in_force(self) -> list[Revocation]:
        """Every revocation whose token has not expired yet (with the leeway), from the set."""
        since = time.time() - REVOKED_KEPT_SECONDS
        found = await self._redis.zrange(
            keys.OAUTH_REVOKED, since, "+inf", sortby=PureToken.BYSCORE, withscores=True
        )
        return [Revocation(id="", jti=jti, expires_at=float(exp)) for jti, exp in found]

    async def revocations_bounds(self) -> tuple[str, str]:
        """The stream's first entry id (what trimming has left) and the last id it gave out;
        "0-0" for both while there is no stream."""
        try:
            info = await self._redis.xinfo_stream(keys.OAUTH_REVOCATIONS)
        except coredis.exceptions.ResponseError as error:
            if "no such key" in str(error).lower():
                return "0-0", "0-0"
            raise
        first = info.get("first-entry")
        last = str(info.get("last-generated-id") or "0-0")
        return (str(first.identifier) if isinstance(first, StreamEntry) else last), last

    async def revocations_since(
        self, last_id: str = "0", *, block_ms: int | None = None, count: int = 1000
    ) -> list[Revocation]:
        """Stream entries after `last_id` ("0": from the start; "$": only new ones), waiting up
        to `block_ms` for the first when given. Feed the last entry's id back in."""
        reply = await self._redis.xread(
            {keys.OAUTH_REVOCATIONS: last_id}, count=count, block=block_ms
        )
        entries = next(iter(reply.values()), ()) if reply else ()
        return [
            Revocation(
                id=entry.identifier,
                jti=entry.field_values["jti"],
                expires_at=float(entry.field_values["exp"]),
            )
            for entry in entries
        ]

    # --- reading ---------------------------------------------------------------------------

    async def get_session(self, session_id: str) -> OAuthSession | None:
        return load(OAuthSession, await self._redis.get(keys.oauth_session(session_id)))

    async def get_token(self, jti: str) -> AccessTokenRecord | None:
        return load(AccessTokenRecord, await self._redis.get(keys.oauth_token(jti)))

    async def get_refresh(self, refresh_hash: str) -> RefreshTokenRecord | None:
        return load(RefreshTokenRecord, await self._redis.get(keys.oauth_refresh(refresh_hash)))

    async def sessions(self) -> list[OAuthSession]:
        found = await scan_keys(self._redis, keys.oauth_session("*"))
        return await load_many(self._redis, OAuthSession, found)

    async def tokens(self) -> list[AccessTokenRecord]:
        found = await scan_keys(self._redis, keys.oauth_token("*"))
        return await load_many(self._redis, AccessTokenRecord, found)

    async def sessions_of_user(self, username: str) -> list[OAuthSession]:
        return await self._sessions_in(keys.oauth_user_sessions(username))

    async def sessions_of_client(self, client_id: str) -> list[OAuthSession]:
        return await self._sessions_in(keys.oauth_client_sessions(client_id))

    async def tokens_of_session(self, session_id: str) -> list[AccessTokenRecord]:
        return await self._tokens_in(keys.oauth_session_tokens(session_id))

    async def tokens_of_user(self, username: str) -> list[AccessTokenRecord]:
        return await self._tokens_in(keys.oauth_user_tokens(username))

    async def _sessions_in(self, index: str) -> list[OAuthSession]:
        return await self._members(index, keys.oauth_session, OAuthSession)

    async def _tokens_in(self, index: str) -> list[AccessTokenRecord]:
        return await self._members(index, keys.oauth_token, AccessTokenRecord)

    async def _members(
        self, index: str, record_key: Callable[[str], str], model: type[M]
    ) -> list[M]:
        """The records an index set names, sorted by name; expired names leave the set."""
        names: Sequence[str] = sorted(await self._redis.smembers(index))
        if not names:
            return []
        values = await self._redis.mget([record_key(name) for name in names])
        gone = [name for name, value in zip(names, values, strict=True) if value is None]
        if gone:
            await self._redis.srem(index, gone)
        return [model.model_validate_json(value) for value in values if value is not None]
