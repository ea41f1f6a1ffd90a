"""The specification's Redis key schema: every key the gateway touches is built here."""

from __future__ import annotations

SERVICES_EXTERNAL = "services:external"
EVENTS_WORKFLOW = "events:workflow"
WORKFLOW_PENDING = "workflow:pending"
WORKFLOW_CONSUMER_INFO = "workflow:consumer:info"
WORKFLOW_GROUP = "workflow-group"


def token(name: str) -> str:
    return f"token:{name}"


def token_hash(token_hash_value: str) -> str:
    return f"token:hash:{token_hash_value}"


def github_login(login: str) -> str:
    """The token whose `github_users` lists this GitHub login (lower case); ours, not the spec's:
    it keeps a login on one token at most."""
    return f"github_login:{login.lower()}"


def dashboard_login(state: str) -> str:
    """A dashboard sign-in with GitHub under way (its state; minutes at most)."""
    return f"dashboard:login:{state}"


def dashboard_session(secret_hash: str) -> str:
    """A dashboard session made by signing in with GitHub (by the hash of its secret)."""
    return f"dashboard:session:{secret_hash}"


def owner_lock(token_hash_value: str) -> str:
    """Held while an owner token's records are counted or cross-checked and then written (ours,
    not the spec's; it lives seconds at most)."""
    return f"owner:lock:{token_hash_value}"


def service_lock(name: str) -> str:
    """Held while a Docker service's container is changed (ours, not the spec's)."""
    return f"lock:service:{name}"


def proxy(hostname: str) -> str:
    return f"proxy:{hostname}"


def route(route_id: str) -> str:
    return f"route:{route_id}"


def route_unique(path: str, priority: int, owner_hash: str | None = None) -> str:
    """The (path, priority) pair a route holds, among the routes of its owner: one owner's
    routes never take another's pair (`:{owner_hash}` added; no owner: the spec's key alone)."""
    base = f"route:unique:{path}:{priority}"
    return f"{base}:{owner_hash}" if owner_hash else base


def route_priority(priority: int, route_id: str) -> str:
    return f"route:priority:{priority}:{route_id}"


def cert(name: str) -> str:
    return f"cert:{name}"


def cert_domain(domain: str) -> str:
    return f"cert:domain:{domain}"


def cert_status(name: str) -> str:
    return f"cert:status:{name}"


def cert_lock(name: str) -> str:
    """Held (SET NX PX, a random token) by the one replica issuing this certificate."""
    return f"cert:lock:{name}"


def self_signed_rate(owner_hash: str) -> str:
    """Self-signed certificates one owner made in the current window (expires with it)."""
    return f"self_signed_rate:{owner_hash}"


def acme_order_rate(owner_hash: str) -> str:
    """ACME certificates one owner ordered in the current window (expires with it)."""
    return f"acme_order_rate:{owner_hash}"


def acme_owner_orders_rate() -> str:
    """ACME certificates all owners together ordered in the current window (expires with it)."""
    return "acme_owner_orders_rate"


def acme_account_emails(owner_hash: str) -> str:
    """SET of the ACME account emails one owner's orders named in the current window (expires
    with it)."""
    return f"acme_account_emails:{owner_hash}"


def acme_account(directory_hash: str, email: str) -> str:
    """An ACME account key and URL, per directory (a hash of its URL) and email."""
    return f"acme:account:{directory_hash}:{email}"


def service_url(name: str) -> str:
    return f"service:url:{name}"


def service_external(name: str) -> str:
    return f"service:external:{name}"


def docker_service(name: str) -> str:
    return f"docker_service:{name}"


def port(number: int | str) -> str:
    return f"port:{number}"


def service_ports(service: str) -> str:
    return f"service:ports:{service}"


def oauth_client(client_id: str) -> str:
    return f"oauth:client:{client_id}"


def oauth_state(state: str) -> str:
    return f"oauth:state:{state}"


def oauth_code(code: str) -> str:
    return f"oauth:code:{code}"


def oauth_token(jti: str) -> str:
    return f"oauth:token:{jti}"


def oauth_refresh(refresh_token: str) -> str:
    return f"oauth:refresh:{refresh_token}"


def oauth_user_tokens(user: str) -> str:
    return f"oauth:user_tokens:{user}"


OAUTH_SIGNING_KEY = "oauth:signing_key"
OAUTH_SIGNING_KEY_RETIRED = "oauth:signing_key:retired"
"""The generated RS256 key every replica signs with when OAUTH_JWT_PRIVATE_KEY_B64 is unset."""

OAUTH_REVOCATIONS = "oauth:revocations"
"""Stream of revoked access tokens ({jti, exp}) that every replica's data plane follows."""
OAUTH_REVOKED = "oauth:revoked"
"""A sorted set: each revoked access token's jti, scored by its expiry; trimmed by expiry, so a
replica that starts learns every revocation still in force, however many came since."""


def oauth_consent(request_id: str) -> str:
    """A logged-in authorization waiting for the user's consent."""
    return f"oauth:consent:{request_id}"


def oauth_code_used(code_hash: str) -> str:
    """Left behind by a redeemed code: a replay revokes the session it started."""
    return f"oauth:code_used:{code_hash}"


def oauth_refresh_used(refresh_hash: str) -> str:
    """Left behind by a rotated refresh token: a reuse revokes its whole session."""
    return f"oauth:refresh_used:{refresh_hash}"


def oauth_session(session_id: str) -> str:
    """One grant (a token family): a login of one user through one client."""
    return f"oauth:session:{session_id}"


def oauth_session_tokens(session_id: str) -> str:
    return f"oauth:session_tokens:{session_id}"


def oauth_user_sessions(user: str) -> str:
    return f"oauth:user_sessions:{user}"


def oauth_register_rate(client_ip: str) -> str:
    """Registrations from one client IP in the current rate-limit window."""
    return f"oauth:register_rate:{client_ip}"


def oauth_anonymous_rate(client_ip: str) -> str:
    """Anonymous requests that store something (login starts, client-document fetches) from one
    client IP in the current rate-limit window."""
    return f"oauth:anonymous_rate:{client_ip}"


def oauth_client_sessions(client_id: str) -> str:
    return f"oauth:client_sessions:{client_id}"


def oauth_client_document(url_hash: str) -> str:
    """A cached Client ID Metadata Document, by the hash of its URL."""
    return f"oauth:client_document:{url_hash}"


OAUTH_CLIENT_DOCUMENTS = "oauth:client_documents"
"""ZSET of the cached documents' URL hashes, scored by when they expire (epoch ms)."""


def resource(uri: str) -> str:
    return f"resource:{uri}"


def workflow_state(hostname: str) -> str:
    return f"workflow:state:{hostname}"


GATEWAY_EPOCH = "gateway:epoch"
"""Which incarnation of the data this Redis holds (ours, not the spec's): written once when a
gateway first finds Redis empty, and anew when an operator accepts Redis after a data loss."""

GATEWAY_DATA_LOSS = "gateway:data-loss"
"""Set by the first replica that finds the epoch gone, until an operator accepts Redis again: a
replica that starts meanwhile, with nothing remembered, joins the hold instead of taking the
emptied Redis for a first start."""
