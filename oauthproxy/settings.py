"""The gateway's configuration: one frozen object read from the environment and `.env`.

Every variable the specification names lives here with the specification's default. Nothing else in
the package reads the environment; configuration flows down from `Settings` as arguments.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from oauthproxy.models.tokens import GITHUB_LOGIN_PATTERN, MAX_GITHUB_USERS
from oauthproxy.tenancy.targets import DEFAULT_DENIED_NETWORKS, parse_networks

MAX_WORKERS = 64
"""The most data-plane processes `WORKERS` may ask for (`auto` stops there too)."""
MAX_ADMIN_GITHUB_USERS = MAX_GITHUB_USERS

Port = Annotated[int, Field(ge=0, le=65535, description="TCP port; 0 picks a free one")]
PositiveSeconds = Annotated[float, Field(gt=0)]


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class AccessLog(StrEnum):
    """Whether each request is also written to stdout as one JSON line."""

    JSON = "json"
    OFF = "off"


class PublicApi(StrEnum):
    """Whether `API_HOSTNAMES` reach the admin API through the public ports."""

    LOOPBACK = "loopback"
    """Only for clients on this machine (behind the PROXY protocol: the client it names)."""
    OFF = "off"
    """For no one: the hostnames stay reserved and answer 404 as unknown hosts."""


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("oauthproxy", appauthor=False))


class Settings(BaseSettings):
    """All settings, named as the environment names them (case-insensitive)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        case_sensitive=False,
    )

    # --- Storage -------------------------------------------------------------------------------
    redis_url: str | None = Field(
        default=None,
        description="redis://:password@host:port/db; unset starts the embedded Redis",
    )
    redis_password: SecretStr | None = Field(
        default=None, description="Redis password, used when REDIS_URL carries none"
    )
    oauthproxy_data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the embedded Redis persists its data and the admin token file lives",
    )

    # --- Logging -------------------------------------------------------------------------------
    log_level: LogLevel = LogLevel.INFO
    request_log_enabled: bool = Field(
        default=True, description="Write one entry per proxied request to Redis (the log API)"
    )
    request_log_redis_db: Annotated[int, Field(ge=0, le=15)] = Field(
        default=1,
        description="Logical Redis database of the request log (its own, so the keys it holds "
        "per request never slow the admin API's listings); 0 shares the configuration's",
    )
    request_log_durable: bool = Field(
        default=False,
        description="Also append the request log to Redis's AOF and send it to replicas: it "
        "then survives a Redis restart, at about twice Redis's CPU per logged request; off, "
        "it is kept in memory and in RDB snapshots only",
    )
    log_retention_hours: Annotated[int, Field(ge=1, le=8760)] = Field(
        default=24, description="Hours every request-log key lives in Redis before it expires"
    )
    log_stream_maxlen: Annotated[int, Field(ge=100)] = Field(
        default=10000, description="Entries the live stream stream:requests keeps (approximate)"
    )
    log_max_redis_memory_mb: Annotated[int, Field(ge=0, le=1_048_576)] = Field(
        default=512,
        description="Request-log entries are dropped (and counted) while Redis uses more than "
        "this many MiB (its used_memory, checked every few seconds), so a flood of requests "
        "cannot fill the Redis that holds the gateway's state; 0: no cap",
    )
    log_buffer_size: Annotated[int, Field(ge=1)] = Field(
        default=10000,
        description="Request-log records held in memory while Redis is slow; more are dropped "
        "and counted, never the request",
    )
    log_slow_seconds: PositiveSeconds = Field(
        default=1.0, description="Requests taking at least this long are indexed as slow"
    )
    metrics_enabled: bool = Field(
        default=True,
        description="Count requests for the Prometheus /metrics endpoint on the API port",
    )
    access_log: AccessLog = Field(
        default=AccessLog.OFF, description="json: also write one JSON line per request to stdout"
    )

    # --- Server --------------------------------------------------------------------------------
    server_host: str = "0.0.0.0"  # noqa: S104 - the public listeners are meant to be public
    http_port: Port = 80
    https_port: Port = 443
    api_port: Port = 9000
    api_bind_host: str = Field(
        default="127.0.0.1",
        description="Where the admin API listens; 0.0.0.0 only inside a container",
    )
    proxy_protocol_port: Port = 10001
    workers: Annotated[int, Field(ge=1, le=MAX_WORKERS)] = Field(
        default=1,
        description="Data-plane processes sharing the public ports (SO_REUSEPORT); auto: one "
        "per CPU. Above 1, a parent process keeps the admin API, certificates and the "
        "embedded Redis and restarts a worker that dies",
    )
    api_url: AnyHttpUrl = AnyHttpUrl("http://localhost:9000")
    api_hostnames: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["localhost"],
        description="Hostnames whose requests on the public ports reach the admin API",
    )
    api_on_public_port: PublicApi = Field(
        default=PublicApi.LOOPBACK,
        description="loopback: API_HOSTNAMES on the public ports answer loopback clients only "
        "(others get 404 as an unknown host); off: they answer no one",
    )
    self_signed_cn: str = "localhost"
    shutdown_grace_seconds: PositiveSeconds = 10.0
    api_redis_timeout: PositiveSeconds = Field(
        default=3.0,
        description=(
            "Seconds the admin API (and the data plane, for ACME challenges and browser logins)"
            " waits for one Redis command before it answers 503"
        ),
    )
    gateway_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.:-]{1,128}$",
        description="This replica's name in the workflow consumer groups (default: host-HTTP_PORT)",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Peers (IPs or CIDRs) whose X-Forwarded-* headers are believed",
    )

    # --- Proxy ---------------------------------------------------------------------------------
    proxy_request_timeout: PositiveSeconds = 120
    proxy_connect_timeout: PositiveSeconds = 30
    proxy_idle_timeout: PositiveSeconds = Field(
        default=75,
        description="Seconds a kept-alive client connection may wait for its next request",
    )
    proxy_header_timeout: PositiveSeconds = Field(
        default=15,
        description="Seconds the head of a kept-alive connection's next request may take to "
        "arrive once it has begun (its first byte may take PROXY_IDLE_TIMEOUT)",
    )
    proxy_websocket_idle_timeout: PositiveSeconds = Field(
        default=3600,
        description="Seconds a WebSocket may carry nothing either way before the gateway closes "
        "it (and its upstream connection); traffic either way starts the wait again",
    )
    proxy_send_timeout: PositiveSeconds = Field(
        default=60,
        description="Seconds a send may wait for a client to take data; a client that stops "
        "reading is cut after it, and its upstream connection closed",
    )
    http2_enabled: bool = Field(
        default=True,
        description="Offer HTTP/2 (ALPN h2) to clients on the HTTPS listeners; false: HTTP/1.1 "
        "only. Upstreams are always spoken to in HTTP/1.1",
    )
    proxy_max_connections_per_ip: Annotated[int, Field(ge=0)] = Field(
        default=256,
        description="Open connections one client IP (an IPv6 /64) may hold across the public "
        "listeners; more are closed at once. Peers in TRUSTED_PROXIES are not counted. 0: no cap",
    )
    proxy_first_request_timeout: PositiveSeconds = Field(
        default=30,
        description="Seconds a new client connection may take to send its first request head "
        "before the gateway closes it (slowloris)",
    )
    fetcher_navigation_timeout: PositiveSeconds = 25
    upstream_ca_bundle: Path | None = Field(
        default=None, description="CA file that verifies https:// upstreams (default: system)"
    )

    # --- ACME ----------------------------------------------------------------------------------
    acme_directory_url: AnyHttpUrl = AnyHttpUrl("https://acme-v02.api.letsencrypt.org/directory")
    acme_staging_url: AnyHttpUrl = AnyHttpUrl(
        "https://acme-staging-v02.api.letsencrypt.org/directory"
    )
    acme_poll_max_attempts: Annotated[int, Field(ge=1)] = 60
    acme_poll_interval_seconds: Annotated[float, Field(ge=0)] = 2
    acme_poll_initial_wait: Annotated[float, Field(ge=0)] = 0
    acme_ca_bundle: Path | None = Field(
        default=None, description="CA file that verifies the ACME directory's TLS"
    )

    # --- Certificates --------------------------------------------------------------------------
    renewal_check_interval: PositiveSeconds = 86400
    renewal_threshold_days: Annotated[int, Field(ge=1)] = 30
    cert_status_retention_seconds: Annotated[int, Field(ge=1)] = 300
    cert_gen_max_workers: Annotated[int, Field(ge=1, le=64)] = 5
    rsa_key_size: Annotated[int, Field(ge=2048, le=8192)] = 2048
    certificate_key_type: Literal["rsa", "ecdsa-p256"] = "rsa"
    """The key of every new certificate (ACME and self-signed): RSA of `rsa_key_size` bits, or
    ECDSA P-256, whose signature makes a full TLS handshake much cheaper."""
    self_signed_days: Annotated[int, Field(ge=1)] = 365
    token_max_certificates: Annotated[int, Field(ge=0)] = 50
    """Certificates one non-admin token may own (the admin is not counted)."""
    acme_owner_orders_per_hour: Annotated[int, Field(ge=1)] = 50
    """ACME orders placed for all owner tokens' certificates together per hour: new ones, and
    the renewal loop's retries and renewals. They go on the gateway's one ACME account, whose
    budget at the CA (Let's Encrypt: 300 new orders per 3 hours) the admin's orders and
    renewals need too; those are never counted nor refused."""

    # --- Docker --------------------------------------------------------------------------------
    docker_gid: int = 999
    docker_api_version: str = "1.41"
    docker_host: str = "unix:///var/run/docker.sock"
    gateway_container: str | None = Field(
        default=None,
        description="The Docker container the gateway runs in (a name or ID; `self`: this "
        "process's hostname, which Docker sets to the container's ID), which then joins each "
        "owner's Docker network to reach its services by name; unset: the gateway runs on the "
        "host",
    )
    base_domain: str = "localhost"

    # --- OAuth ---------------------------------------------------------------------------------
    github_client_id: str | None = None
    github_client_secret: SecretStr | None = None
    github_authorize_url: AnyHttpUrl = AnyHttpUrl("https://github.com/login/oauth/authorize")
    github_token_url: AnyHttpUrl = AnyHttpUrl("https://github.com/login/oauth/access_token")
    github_api_url: AnyHttpUrl = AnyHttpUrl("https://api.github.com")
    oauth_access_token_lifetime: Annotated[int, Field(ge=1)] = 1800
    oauth_refresh_token_lifetime: Annotated[int, Field(ge=1)] = 31536000
    oauth_identity_max_age: Annotated[int, Field(ge=0)] = Field(
        default=86400,
        description="seconds a login's GitHub emails, organisations and teams are trusted: a "
        "refresh for a proxy whose policy checks them is refused after this (the user logs in "
        "again, and GitHub is asked afresh); 0: for the refresh token's whole life",
    )
    oauth_session_timeout: Annotated[int, Field(ge=1)] = 300
    oauth_client_lifetime: Annotated[int, Field(ge=0)] = 7776000
    oauth_unused_client_lifetime: Annotated[int, Field(ge=60)] = Field(
        default=3600,
        description="seconds an openly registered client lives until its first token; then "
        "OAUTH_CLIENT_LIFETIME",
    )
    oauth_allowed_github_users: str = Field(
        default="", description="* for every user, or a comma-separated list"
    )
    oauth_admin_users: str = Field(
        default="",
        description="GitHub logins that may receive the mcp:admin scope (* for every user who "
        "may log in); empty: nobody",
    )
    admin_github_users: str = Field(
        default="",
        description="GitHub logins (comma-separated, case-insensitive) that may sign in to the "
        "dashboard as the admin; empty: nobody",
    )
    dashboard_url: AnyHttpUrl | None = Field(
        default=None,
        description="The dashboard's address as browsers reach it (its origin), for GitHub "
        "sign-in's callback; unset: the origin each request came to",
    )
    dashboard_session_lifetime: Annotated[int, Field(ge=60, le=604800)] = Field(
        default=28800,
        description="Seconds a dashboard session made by signing in with GitHub lasts",
    )
    oauth_user_scopes: str = Field(
        default="mcp:read mcp:write",
        pattern=r"^[ A-Za-z0-9:._-]*$",
        description="The scopes a user not in OAUTH_ADMIN_USERS may receive (space-separated)",
    )
    oauth_mcp_protocol_version: str = "2025-06-18"
    oauth_jwt_algorithm: str = "RS256"
    oauth_jwt_secret: SecretStr | None = None
    oauth_jwt_private_key_b64: SecretStr | None = None
    oauth_issuer: str | None = Field(
        default=None,
        pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$",
        description="The authorization server's issuer URL (default: https://auth.{BASE_DOMAIN})",
    )
    oauth_code_lifetime: Annotated[int, Field(ge=1, le=600)] = 60
    oauth_github_scopes: str = Field(
        default="read:user user:email read:org",
        description="Scopes asked of GitHub at login (read:org for org and team checks)",
    )
    oauth_ca_bundle: Path | None = Field(
        default=None,
        description="CA file that verifies GitHub's and client metadata documents' TLS",
    )
    oauth_cimd_allow_loopback: bool = Field(
        default=False,
        description="Fetch client metadata documents from loopback addresses (tests only)",
    )
    oauth_register_rate_limit: Annotated[int, Field(ge=0)] = Field(
        default=20,
        description="Dynamic client registrations (POST /register) per client IP and window; "
        "0 turns the limit off",
    )
    oauth_register_rate_window: Annotated[int, Field(ge=1)] = Field(
        default=60, description="The window of OAUTH_REGISTER_RATE_LIMIT, in seconds"
    )
    oauth_anonymous_rate_limit: Annotated[int, Field(ge=0)] = Field(
        default=60,
        description="Anonymous requests that store something (login starts: GET /authorize and "
        "a redirect-mode proxy's browser login; requests naming an uncached client metadata "
        "document) per client IP and window; 0 turns the limit off",
    )
    oauth_anonymous_rate_window: Annotated[int, Field(ge=1)] = Field(
        default=60, description="The window of OAUTH_ANONYMOUS_RATE_LIMIT, in seconds"
    )

    # --- MCP protected resources ---------------------------------------------------------------
    mcp_resource_indicators_enabled: bool = True
    mcp_resource_validation_strict: bool = True
    mcp_max_resources_per_token: Annotated[int, Field(ge=1)] = 5
    mcp_server_url: str | None = None

    # --- Administration ------------------------------------------------------------------------
    admin_token: SecretStr | None = None
    admin_email: str | None = None

    # --- Tenants -------------------------------------------------------------------------------
    token_max_proxies: Annotated[int, Field(ge=0)] = Field(
        default=50, description="Proxies one non-admin token may own"
    )
    token_max_routes: Annotated[int, Field(ge=0)] = Field(
        default=100, description="Routes one non-admin token may own"
    )
    token_max_services: Annotated[int, Field(ge=0)] = Field(
        default=50, description="External services one non-admin token may own"
    )
    token_max_ports: Annotated[int, Field(ge=0)] = Field(
        default=20, description="Host ports the Docker services of one non-admin token may hold"
    )
    token_max_docker_memory: Annotated[str, Field(pattern=r"^(0|[1-9][0-9]{0,9}[bkmgBKMG]?)$")] = (
        Field(
            default="4g",
            description="Memory limit of all the Docker services of one non-admin token together, "
            "in Docker's units (512m, 4g); 0: no limit",
        )
    )
    token_max_docker_cpus: Annotated[float, Field(ge=0, le=4096)] = Field(
        default=8.0,
        description="CPU limit of all the Docker services of one non-admin token together; "
        "0: no limit",
    )
    owner_docker_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Docker networks non-admin tokens may attach their services to, besides "
        "their owner's own network (a listed one is shared by every owner naming it); empty: "
        "none. The admin token may name any",
    )
    owner_image_registries: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Registries non-admin tokens may pull their services' images from (hosts, "
        "or host:port; docker.io for the default registry); empty: any registry whose name "
        "resolves only to public addresses",
    )
    owner_target_deny_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_DENIED_NETWORKS),
        description="Networks (IPs or CIDRs) that non-admin tokens may not point a proxy, route "
        "or service at; empty allows every address but the gateway's own listeners",
    )

    # --- Testing -------------------------------------------------------------------------------
    test_domain: str | None = None
    test_email: str | None = None
    test_domain_base: str | None = None
    test_api_url: str = "http://localhost:80"
    test_proxy_target_url: str = "https://example.com"
    test_token: SecretStr | None = None

    @field_validator(
        "api_hostnames",
        "trusted_proxies",
        "owner_docker_networks",
        "owner_image_registries",
        "owner_target_deny_networks",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def replica_name(self) -> str:
        """This replica's name: `GATEWAY_ID`, else host-HTTP_PORT (stable across restarts, so a
        restarted gateway takes back its consumer group). With HTTP_PORT 0 there is no stable
        name: each call makes a new one, so call it once per gateway."""
        if self.gateway_id:
            return self.gateway_id
        if self.http_port:
            return f"{socket.gethostname()}-{self.http_port}"
        return f"{socket.gethostname()}-{secrets.token_hex(4)}"

    @property
    def oauth_issuer_url(self) -> str:
        """OAUTH_ISSUER without a trailing slash, or `https://auth.{BASE_DOMAIN}`."""
        return (self.oauth_issuer or f"https://auth.{self.base_domain}").rstrip("/")

    @field_validator("workers", mode="before")
    @classmethod
    def _worker_count(cls, value: object) -> object:
        """`auto` is one per CPU this process may run on; anything else must be a number."""
        if not isinstance(value, str):
            return value
        if value.strip().lower() == "auto":
            return min(len(os.sched_getaffinity(0)), MAX_WORKERS)
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError(
                f"expected auto (one per CPU) or a number of processes from 1 to {MAX_WORKERS}"
            ) from None

    @field_validator("admin_github_users")
    @classmethod
    def _github_logins(cls, value: str) -> str:
        logins = [login.strip() for login in value.split(",") if login.strip()]
        if len(logins) > MAX_ADMIN_GITHUB_USERS:
            raise ValueError(f"at most {MAX_ADMIN_GITHUB_USERS} logins")
        for login in logins:
            if not re.fullmatch(GITHUB_LOGIN_PATTERN, login):
                raise ValueError(f"{login!r} is not a GitHub login (letters, digits, hyphens)")
        return ",".join(logins)

    def admin_github_logins(self) -> frozenset[str]:
        """ADMIN_GITHUB_USERS, lower case."""
        return frozenset(login.lower() for login in self.admin_github_users.split(",") if login)

    @field_validator("owner_target_deny_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        parse_networks(value)
        return value

    @field_validator("oauth_jwt_algorithm")
    @classmethod
    def _known_algorithm(cls, value: str) -> str:
        if value != "RS256":
            raise ValueError("expected RS256 (tokens are only ever signed and accepted as RS256)")
        return value


class SettingsError(Exception):
    """Start-up configuration is invalid; `str()` is one line per bad variable."""


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem naming the variable, the value given and what was expected."""
    lines = []
    for problem in error.errors():
        variable = str(problem["loc"][0]).upper() if problem["loc"] else "SETTINGS"
        given = problem.get("input")
        shown = "" if isinstance(given, dict) else f"={given!r}"
        expected = problem["msg"].removeprefix("Value error, ")
        lines.append(f"invalid setting {variable}{shown}: {expected}")
    return "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, raising `SettingsError` with a readable message when one is invalid."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None
