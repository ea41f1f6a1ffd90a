"""`token:{name}` and `token:hash:{hash}`: bearer tokens, looked up by the hash of their secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets

from oauthproxy.errors import Conflict
from oauthproxy.models.common import utcnow
from oauthproxy.models.tokens import Token
from oauthproxy.storage import keys
from oauthproxy.storage.base import (
    JsonRepository,
    Pipeline,
    Redis,
    atomically,
    dump,
    load,
    translate_errors,
)

TOKEN_PREFIX = "acm_"  # noqa: S105 - a prefix, not a secret

# The token other than ARGV[2] (by name) whose record lists the GitHub login `login` (lower
# case), or nil. An index key whose token no longer lists the login is stale and holds nothing.
_HOLDER = """
local function holder_of(login, name)
  local holder = redis.call('GET', 'github_login:' .. login)
  if not holder or holder == name then return nil end
  local record = redis.call('GET', 'token:' .. holder)
  if not record then return nil end
  for _, listed in ipairs(cjson.decode(record)['github_users'] or {}) do
    if string.lower(listed) == login then return holder end
  end
  return nil
end
local function first_held(logins, name)
  for _, login in ipairs(logins) do
    local holder = holder_of(login, name)
    if holder then return 'github:' .. login .. ':' .. holder end
  end
  return nil
end
"""

# Create both keys only if neither exists (a name or a secret is never silently reused) and no
# other token lists one of its GitHub logins; then claim those logins.
_CREATE = (
    _HOLDER
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'name' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'secret' end
local logins = cjson.decode(ARGV[3])
local held = first_held(logins, ARGV[2])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
for _, login in ipairs(logins) do redis.call('SET', 'github_login:' .. login, ARGV[2]) end
return 'ok'
"""
)

# Replace a token's GitHub logins: only if its record is still ARGV[1] (else 'changed', and the
# caller reads it again), and no other token lists one of the new logins.
_SET_GITHUB_USERS = (
    _HOLDER
    + """
local current = redis.call('GET', KEYS[1])
if not current then return 'missing' end
if current ~= ARGV[1] then return 'changed' end
local logins = cjson.decode(ARGV[4])
local held = first_held(logins, ARGV[3])
if held then return held end
for _, old in ipairs(cjson.decode(current)['github_users'] or {}) do
  local key = 'github_login:' .. string.lower(old)
  if redis.call('GET', key) == ARGV[3] then redis.call('DEL', key) end
end
redis.call('SET', KEYS[1], ARGV[2])
for _, login in ipairs(logins) do redis.call('SET', 'github_login:' .. login, ARGV[3]) end
return 'ok'
"""
)

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


MAX_ATTEMPTS = 5
"""Tries of a read-then-write that another writer may overtake."""


def _logins(github_users: list[str]) -> str:
    """The logins as the index spells them (lower case), as JSON for a script; `[]` as such
    (cjson would read `{}` as an object)."""
    return json.dumps([login.lower() for login in github_users])


def _raise_if_held(outcome: str) -> None:
    """`github:{login}:{holder}` from a script: that login is already another token's."""
    if outcome.startswith("github:"):
        _, login, holder = outcome.split(":", 2)
        raise Conflict(
            "github_users",
            f"the GitHub user {login} already signs in as the token {holder!r}; "
            "a login may be listed on one token only",
        )


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
    github_users: list[str] | None = None,
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
        github_users=github_users or [],
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
        self._set_github_users = redis.register_script(_SET_GITHUB_USERS)

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
            args=[dump(token), token.name, _logins(token.github_users)],
        )
        if outcome == "name":
            raise Conflict("name", f"a token named {token.name!r} already exists")
        if outcome == "secret":
            raise Conflict("token", "that token value is already in use")
        _raise_if_held(outcome)

    async def by_github_login(self, login: str) -> Token | None:
        """The token whose `github_users` lists `login` (ignoring case), or None."""
        name = await self._redis.get(keys.github_login(login))
        token = await self.get(name) if name is not None else None
        if token is None or login.lower() not in {user.lower() for user in token.github_users}:
            return None
        return token

    async def set_github_users(self, name: str, github_users: list[str]) -> Token | None:
        """Replace the GitHub users of the token `name` (None when there is none); `Conflict`
        naming `github_users` when another token lists one of them."""
        for _ in range(MAX_ATTEMPTS):
            raw = await self._redis.get(keys.token(name))
            if raw is None:
                return None
            updated = Token.model_validate_json(raw).model_copy(
                update={"github_users": github_users}
            )
            outcome: str = await self._set_github_users(
                keys=[keys.token(name)],
                args=[raw, dump(updated), name, _logins(github_users)],
            )
            if outcome == "missing":
                return None
            if outcome != "changed":
                _raise_if_held(outcome)
                return updated
        raise Conflict("name", f"the token {name!r} kept changing; try again")

    async def put(self, token: Token) -> None:
        """Create or replace `token` under its name (used for the bootstrap admin token)."""
        outcome: str = await self._replace(
            keys=[keys.token(token.name), keys.token_hash(token.hash)],
            args=[dump(token), token.name, token.hash],
        )
        if outcome == "secret":
            raise Conflict("token", "that token value is already used by another token")

    async def is_admins(self, owner_hash: str | None) -> bool:
        """Whether a record with this `owner_token_hash` is the admin's: an admin token's, or
        one without an owner (made before records had owners)."""
        if owner_hash is None:
            return True
        owner = await self.by_hash(owner_hash)
        return owner is not None and owner.is_admin

    async def by_hash(self, token_hash: str) -> Token | None:
        """The token whose secret hashes to `token_hash` (an owner of records), or None."""
        name = await self._redis.get(keys.token_hash(token_hash))
        token = await self.get(name) if name is not None else None
        return token if token is not None and token.hash == token_hash else None

    async def set_suspended(
        self, name: str, reason: str | None, *, if_reason: str | None = None
    ) -> Token | None:
        """Suspend the token `name` with `reason`, or resume it (None); None when there is no
        such token, `Conflict` naming `name` for the admin token, which is never suspended (it
        is the way out of every suspension). With `if_reason`, only a token that is not
        suspended or is suspended with that reason changes (`Conflict` naming `if_reason`
        otherwise), checked in the transaction that writes: a suspension the admin sets while
        `config load` runs is never resumed or replaced by the load. One key changes, on the
        record as it is when the write lands (as `update_email`)."""
        key = keys.token(name)

        async def write(pipe: Pipeline) -> Token | None:
            token = load(Token, await self._redis.get(key))
            if token is None:
                return None
            if token.is_admin:
                raise Conflict("name", "the admin token cannot be suspended")
            if if_reason is not None and token.suspended not in {None, if_reason}:
                raise Conflict(
                    "if_reason",
                    f"the token {name!r} is suspended for another reason: {token.suspended}",
                )
            if reason is None and token.suspended is None:
                return token
            updated = token.model_copy(update={"suspended": reason})
            pipe.set(key, dump(updated))
            return updated

        return await atomically(self._redis, [key], write)

    async def update_email(self, name: str, cert_email: str) -> Token | None:
        """Set the token's certificate email (None when there is no such token), on the record
        as it is when the write lands: a read-then-SET undid a change made in between (the
        admin taking a GitHub login off the token)."""
        key = keys.token(name)

        async def write(pipe: Pipeline) -> Token | None:
            token = load(Token, await self._redis.get(key))
            if token is None:
                return None
            updated = token.model_copy(update={"cert_email": cert_email})
            pipe.set(key, dump(updated))
            return updated

        return await atomically(self._redis, [key], write)
