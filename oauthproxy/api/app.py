"""The admin API application: quart-trio, validated and documented by quart-schema."""

from __future__ import annotations

import trio
from quart_schema import HttpSecurityScheme, Info, OAuth2SecurityScheme, QuartSchema
from quart_trio import QuartTrio

from oauthproxy import __version__
from oauthproxy.api.audit import install_audit
from oauthproxy.api.bodies import install_body_reading
from oauthproxy.api.caching import install_no_store
from oauthproxy.api.certificates import certificates as certificates_api
from oauthproxy.api.cleanup import cleanup
from oauthproxy.api.contract import ContractProvider, install_allow_header
from oauthproxy.api.docker_services import docker_services
from oauthproxy.api.errors import install_error_handlers
from oauthproxy.api.forward_auth import forward_auth
from oauthproxy.api.health import health
from oauthproxy.api.logs import logs
from oauthproxy.api.metrics import metrics
from oauthproxy.api.oauth_admin import oauth_admin
from oauthproxy.api.oauth_server import oauth_server
from oauthproxy.api.oauth_status import status as oauth_status
from oauthproxy.api.ports import ports
from oauthproxy.api.proxies import proxies
from oauthproxy.api.redis_state import redis_state
from oauthproxy.api.resources import ResourceUriConverter, resources
from oauthproxy.api.routes import routes
from oauthproxy.api.services import services
from oauthproxy.api.state import AppState, ListenerPorts
from oauthproxy.api.tokens import tokens
from oauthproxy.certificates.manager import CertificateManager
from oauthproxy.condition import GatewayCondition
from oauthproxy.dashboard import dashboard, github_sign_in
from oauthproxy.logs.logger import RequestLogger
from oauthproxy.services.docker import DockerEngine
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage

MCP_AUTHORIZATION_CODE = {
    "authorizationUrl": "/authorize",
    "tokenUrl": "/token",
    "refreshUrl": "/token",
    "scopes": {
        "mcp:read": "Read from MCP servers",
        "mcp:write": "Call MCP servers' tools",
        "mcp:admin": "Administer MCP servers (OAUTH_ADMIN_USERS only)",
    },
}


def create_app(
    settings: Settings,
    storage: Storage,
    *,
    embedded_redis: bool,
    certificates: CertificateManager | None = None,
    listeners: ListenerPorts | None = None,
    requests: RequestLogger | None = None,
    condition: GatewayCondition | None = None,
) -> QuartTrio:
    app = QuartTrio("oauthproxy")
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.url_map.strict_slashes = False  # `/api/v1/proxy/targets` is served, not redirected
    app.extensions["oauthproxy"] = AppState(
        settings=settings,
        storage=storage,
        started_at=trio.current_time(),
        embedded_redis=embedded_redis,
        certificates=certificates,
        listeners=listeners or ListenerPorts(),
        requests=requests,
        condition=condition or GatewayCondition(ready=True),
        docker=DockerEngine(settings.docker_host, settings.docker_api_version),
    )
    QuartSchema(
        app,
        openapi_path="/api/v1/openapi.json",
        swagger_ui_path=None,  # served by the dashboard, with its assets (no CDN)
        redoc_ui_path=None,
        scalar_ui_path=None,
        info=Info(title="oauthproxy admin API", version=__version__),
        security_schemes={
            "bearer": HttpSecurityScheme(scheme="bearer"),
            # the gateway's OAuth 2.1 server, for MCP clients of the proxies it protects
            "mcp_oauth": OAuth2SecurityScheme(flows={"authorizationCode": MCP_AUTHORIZATION_CODE}),
        },
        openapi_provider_class=ContractProvider,
    )
    install_error_handlers(app)
    install_allow_header(app)
    install_body_reading(app)
    install_no_store(app)
    app.url_map.converters["resource_uri"] = ResourceUriConverter
    install_audit(app)
    app.register_blueprint(health)
    app.register_blueprint(tokens)
    app.register_blueprint(proxies)
    app.register_blueprint(services)
    app.register_blueprint(ports)
    app.register_blueprint(docker_services)
    app.register_blueprint(routes)
    app.register_blueprint(oauth_server)
    app.register_blueprint(oauth_admin)
    app.register_blueprint(oauth_status)
    app.register_blueprint(resources)
    app.register_blueprint(forward_auth)
    app.register_blueprint(certificates_api)
    app.register_blueprint(cleanup)
    app.register_blueprint(logs)
    app.register_blueprint(metrics)
    app.register_blueprint(redis_state)
    app.register_blueprint(dashboard)
    app.register_blueprint(github_sign_in)
    return app
