"""The `oauthproxy` command: `oauthproxy run` starts the gateway."""

from __future__ import annotations

import gc
import logging
import shlex
import sys

import cyclopts
import trio

from cli.visible import one_line
from oauthproxy import __version__
from oauthproxy.admin_token import AdminTokenSource, read_admin_token
from oauthproxy.errors import GatewayError, ListenerError
from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings, SettingsError, load_settings
from oauthproxy.storage.console import console_url, execute, is_redis_error

app = cyclopts.App(name="oauthproxy", version=__version__, help=__doc__)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        print(error, file=sys.stderr)
        raise SystemExit(2) from None


def settings_level(settings: Settings) -> int:
    return logging.getLevelNamesMapping()[settings.log_level.value]


def configure_logging(settings: Settings, *, name: str = "") -> None:
    """LOG_LEVEL for the gateway's own loggers; `name` prefixes each line (a worker's)."""
    prefix = f"[{name}] " if name else ""
    logging.basicConfig(
        level=settings_level(settings),
        format=f"%(asctime)s %(levelname)-7s {prefix}%(name)s: %(message)s",
    )
    logging.getLogger("coredis").setLevel(max(logging.WARNING, settings_level(settings)))


def banner(ready: Ready) -> str:
    token = ready.admin_token
    if token.source is AdminTokenSource.GENERATED:
        how = (
            f"generated on this first run: {token.secret}\n"
            f"                 kept in {token.file} (read it again with `just token-admin`)"
        )
    elif token.source is AdminTokenSource.ENVIRONMENT:
        how = "the ADMIN_TOKEN you set (also `just token-admin`)"
    else:
        how = f"in {token.file} (`just token-admin` prints it)"
    return "\n".join(
        [
            f"oauthproxy {__version__} is ready",
            f"  admin API      {ready.api_url}   (docs: {ready.api_url}/api/v1/docs)",
            f"  dashboard      {ready.api_url}/dashboard/   (sign in with the admin token below)",
            f"  proxies        http://{ready.http_host}:{ready.http_port} (by Host header), "
            f"https://{ready.http_host}:{ready.https_port} (by SNI, once a certificate exists)",
            f"  PROXY protocol {ready.http_host}:{ready.proxy_protocol_port} "
            "(HTTP or TLS from load balancers in TRUSTED_PROXIES)",
            f"  redis          {ready.redis}",
            *(
                [f"  workers        {ready.workers} data-plane processes share the public ports"]
                if ready.workers > 1
                else []
            ),
            f"  data           {ready.data_dir}",
            f"  admin token    {how}",
            f"  try            API_URL={ready.api_url} ./scripts/just token-list",
        ]
    )


async def _run(settings: Settings) -> None:
    async with trio.open_nursery() as nursery:
        ready: Ready = await nursery.start(serve, settings)
        # Everything built while starting (modules, settings, routes) lives as long as the
        # process: out of the cyclic collector's reach, a full collection walks only what
        # requests allocate (full collections of ~65 ms were seen under load without this).
        gc.freeze()
        print(banner(ready), flush=True)


@app.command
def run() -> None:
    """Start the gateway (with the embedded Redis when REDIS_URL is unset)."""
    settings = settings_or_exit()
    configure_logging(settings)
    try:
        trio.run(_run, settings)
    except (GatewayError, BaseExceptionGroup) as error:
        reason = known_failure(error)
        if reason is None:
            raise
        print(f"oauthproxy: {reason}", file=sys.stderr)
        raise SystemExit(exit_code(error)) from None
    print("oauthproxy stopped", flush=True)


def exit_code(error: BaseException) -> int:
    """2 when the settings must change (a port in a setting is taken, as for an invalid
    setting), 1 for a failure at run time (Redis unreachable)."""
    if isinstance(error, BaseExceptionGroup):
        return 2 if error.subgroup(ListenerError) is not None else 1
    return 2 if isinstance(error, ListenerError) else 1


def known_failure(error: BaseException) -> str | None:
    """The message of the first expected failure (ours, or Redis being unreachable) in `error`."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (reason := known_failure(inner)) is not None:
                return reason
        return None
    if isinstance(error, GatewayError):
        return str(error)
    if isinstance(error, OSError) or is_redis_error(error):
        return f"cannot reach Redis: {error}"
    return None


@app.command(name="admin-token")
def admin_token() -> None:
    """Print the admin token (ADMIN_TOKEN, or the one generated on first run)."""
    secret = read_admin_token(settings_or_exit())
    if secret is None:
        print("no admin token yet: start the gateway once (`just run`)", file=sys.stderr)
        raise SystemExit(1)
    print(secret)


@app.command(name="check-settings")
def check_settings() -> None:
    """Validate the settings from the environment and .env, and say so."""
    settings_or_exit()
    print("settings are valid")


@app.command(name="redis-cli")
def redis_cli(*command: str) -> None:
    """Run a Redis command (or, with none, read commands line by line) against the gateway's
    Redis: REDIS_URL, or the embedded server of the running gateway."""
    settings = settings_or_exit()
    password = settings.redis_password
    url = console_url(settings.redis_url, settings.oauthproxy_data_dir)
    if url is None:
        print(
            "no Redis: REDIS_URL is unset and no gateway is running (`just run`)", file=sys.stderr
        )
        raise SystemExit(1)
    if password is not None and "@" not in url:
        url = url.replace("://", f"://:{password.get_secret_value()}@", 1)
    lines = [list(command)] if command else (shlex.split(line) for line in sys.stdin)
    for argv in lines:
        if argv:
            print(_render(trio.run(execute, url, argv)))


def _render(reply: object) -> str:
    """Redis's reply as lines, with control characters and line breaks spelled out: keys and
    values hold what anyone sent (the request log indexes a client's `client_id`), and a
    terminal obeys the escape sequences in them (OSC 52 writes the clipboard)."""
    if isinstance(reply, list | tuple | set):
        lines = (f"{n}) {one_line(str(item))}" for n, item in enumerate(reply, 1))
        return "\n".join(lines) or "(empty)"
    return "(nil)" if reply is None else one_line(str(reply))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
