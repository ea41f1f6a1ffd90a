"""`token:{name}` and `token:hash:{hash}`: bearer tokens, looked up by the hash of their secret."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from coredis import PureToken

from oauthproxy.errors import Conflict
from oauthproxy.models.common import utcnow
from oauthproxy.models.tokens import Token
from oauthproxy.storage import keys
from oauthproxy.storage.base import JsonRepository, Redis, dump, translate_errors

TOKEN_PREFIX = "acm_"  # noqa: S105 - a prefix, not a secret

# Create both keys only if neither exists: a name or a secret is never silently reused.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'name' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'secret' end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return 'ok'
"""

# Replace a token's record and its hash mapping together, dropping the old mapping.
_REPLACE = """
local old = redis.call('GET', KEYS[1])
if old then
  local old_hash = cjson.decode(old)['hash']
  if old_hash ~= ARGV[3] then redis.call('DEL', 'token:hash:' .. old_hash) end
end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[2] then return 'secret' end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return 'ok'
"""


def hash_secret(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_token(
    name: str,
    *,
    secret: str | None = None,
    cert_email: str | None = None,
    created_by: str | None = None,
    is_admin: bool = False,
) -> Token:
    value = secret or new_secret()
    return Token(
        name=name,
        token=value,
        hash=hash_secret(value),
        cert_email=cert_email,
        created_at=utcnow(),
        created_by=created_by,
        is_admin=is_admin,
    )


@translate_errors
class TokenRepository(JsonRepository[Token]):
    model = Token
    prefix = keys.token("")
    skip = (keys.token_hash(""),)

    def __init__(self, redis: Redis) -> None:
        super().__init__(redis)
        self._create = redis.register_script(_CREATE)
        self._replace = redis.register_script(_REPLACE)

    async def authenticate(self, secret: str) -> Token | None:
        """The token whose secret this is, or None. The hashes are compared in constant time."""
        presented = hash_secret(secret)
        name = await self._redis.get(keys.token_hash(presented))
        token = await self.get(name) if name is not None else None
        if token is None or not hmac.compare_digest(token.hash, presented):
            return None
        return token

    async def create(self, token: Token) -> None:
        outcome: str = await self._create(
            keys=[keys.token(token.name), keys.token_hash(token.hash)],
            args=[dump(token), token.name],
        )
        if outcome == "name":
            raise Conflict("name", f"a token named {token.name!r} already exists")
        if outcome == "secret":
            raise Conflict("token", "that token value is already in use")

    async def put(self, token: Token) -> None:
        """Create or replace `token` under its name (used for the bootstrap admin token)."""
        outcome: str = await self._replace(
            keys=[keys.token(token.name), keys.token_hash(token.hash)],
            args=[dump(token), token.name, token.hash],
        )
        if outcome == "secret":
            raise Conflict("token", "that token value is already used by another token")

    async def by_hash(self, token_hash: str) -> Token | None:
        """The token whose secret hashes to `token_hash` (an owner of records), or None."""
        name = await self._redis.get(keys.token_hash(token_hash))
        token = await self.get(name) if name is not None else None
        return token if token is not None and token.hash == token_hash else None

    async def update_email(self, name: str, cert_email: str) -> Token | None:
        token = await self.get(name)
        if token is None:
            return None
        updated = token.model_copy(update={"cert_email": cert_email})
        stored = await self._redis.set(keys.token(name), dump(updated), condition=PureToken.XX)
        return updated if stored else None
