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


def proxy(hostname: str) -> str:
    return f"proxy:{hostname}"


def proxy_client(server_port: int, client_port: int) -> str:
    return f"proxy:client:{server_port}:{client_port}"


def route(route_id: str) -> str:
    return f"route:{route_id}"


def route_unique(path: str, priority: int) -> str:
    return f"route:unique:{path}:{priority}"


def route_priority(priority: int, route_id: str) -> str:
    return f"route:priority:{priority}:{route_id}"


def cert(name: str) -> str:
    return f"cert:{name}"


def cert_domain(domain: str) -> str:
    return f"cert:domain:{domain}"


def cert_status(name: str) -> str:
    return f"cert:status:{name}"


def service_url(name: str) -> str:
    return f"service:url:{name}"


def service_external(name: str) -> str:
    return f"service:external:{name}"


def docker_service(name: str) -> str:
    return f"docker_service:{name}"


def port(number: int) -> str:
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


def resource(uri: str) -> str:
    return f"resource:{uri}"


def workflow_state(hostname: str) -> str:
    return f"workflow:state:{hostname}"
