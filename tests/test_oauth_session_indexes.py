"""The index sets of a session's access tokens (`oauth:session_tokens:{sid}`,
`oauth:user_tokens:{username}`) live as long as the session; a client that refreshes all day
adds a jti per refresh. Expired jtis are pruned as the sets grow, so they stay about as large as
the tokens still alive, not as the session's whole history."""

from __future__ import annotations

from datetime import timedelta

from oauthproxy.models.common import utcnow
from oauthproxy.models.oauth import AccessTokenRecord, OAuthSession, UserIdentity
from oauthproxy.storage import Storage, keys, oauth_sessions

SESSION = "session-1"
ALICE = UserIdentity(subject="github-1", user_id="1", username="alice")


def _token(jti: str, seconds: float) -> AccessTokenRecord:
    now = utcnow()
    return AccessTokenRecord(
        jti=jti,
        session_id=SESSION,
        client_id="client",
        subject=ALICE.subject,
        username=ALICE.username,
        scope="mcp:read",
        issued_at=now,
        expires_at=now + timedelta(seconds=seconds),
    )


async def test_a_refresh_loop_leaves_no_pile_of_expired_jtis(storage: Storage) -> None:
    session = OAuthSession(
        session_id=SESSION,
        client_id="client",
        identity=ALICE,
        scope="mcp:read",
        expires_at=utcnow() + timedelta(days=30),
    )
    await storage.oauth.start(session, _token("first", 3600), None)
    batch: list[str] = []
    # a token's record outlives it by REVOKED_KEPT_SECONDS (revocations in the verifier's
    # leeway find it): tokens that expired that long ago are written as gone at once
    gone = -(oauth_sessions.REVOKED_KEPT_SECONDS + 1)
    for number in range(150):  # ten rounds of fifteen refreshes; all but the last round expire
        if number % 15 == 0:
            batch = []
        batch.append(f"jti-{number}")
        lifetime = 3600 if number >= 135 else gone
        assert await storage.oauth.extend(SESSION, _token(batch[-1], lifetime), None)
    for index in (keys.oauth_session_tokens(SESSION), keys.oauth_user_tokens("alice")):
        members = await storage.redis.smembers(index)
        assert {"first", *batch} <= members  # what is alive stays listed
        assert len(members) < 40, f"{index}: {len(members)} members for at most 16 live tokens"
        assert await storage.redis.ttl(index) > 29 * 86400  # as long as the session
    listed = {token.jti for token in await storage.oauth.tokens_of_session(SESSION)}
    assert listed == {"first", *batch}
