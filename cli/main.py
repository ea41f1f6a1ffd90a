"""`proxy-client`: the root app, its global options, and the one place errors become exit codes.

A new command group is one module under `cli/commands/` with its own `App`, registered below.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

from cyclopts import App, Group, Parameter
from rich.console import Console

from cli.commands import (
    backup,
    certificates,
    docker_services,
    log_oauth,
    logs,
    maintenance,
    oauth,
    proxies,
    resources,
    routes,
    services,
    system,
    tokens,
)
from cli.config import Options, OutputFormat, load_config
from cli.errors import CliError
from cli.session import open_session
from cli.visible import visible

GLOBAL_OPTIONS = Group("Global options", sort_key=0)


def _version() -> str:
    try:
        return version("oauthproxy")
    except PackageNotFoundError:
        return "unknown"


app = App(
    name="proxy-client",
    help="Command-line client of the oauthproxy gateway's admin API.",
    version=_version,
)
app.command(tokens.app)
app.command(proxies.app)
app.command(services.app)
app.command(routes.app)
app.command(certificates.app)
app.command(oauth.app)
app.command(resources.app)
app.command(system.health)
app.command(system.metrics)
app.command(system.redis_accept, name="redis-accept")
app.command(backup.app)
app.command(logs.app)
logs.app.command(log_oauth.oauth)
logs.app.command(log_oauth.oauth_debug, name="oauth-debug")
logs.app.command(log_oauth.oauth_flow, name="oauth-flow")
services.app.command(maintenance.register_oauth, name="register-oauth")
services.app.command(maintenance.cleanup_orphaned, name="cleanup-orphaned")
for command_name, command in docker_services.COMMANDS.items():
    services.app.command(command, name=command_name)


@app.meta.default
def launch(
    *arguments: Annotated[str, Parameter(show=False, allow_leading_hyphen=True)],
    token: Annotated[
        str | None,
        Parameter(
            group=GLOBAL_OPTIONS,
            help="Bearer token (default: $TOKEN, $ADMIN_TOKEN, the config file's token, "
            "or the admin token of a gateway on this machine).",
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        Parameter(
            group=GLOBAL_OPTIONS,
            help="The admin API's URL (default: $API_URL, the config file's api_url, "
            "else http://localhost:9000).",
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat | None,
        Parameter(
            name=["--format", "-o"],
            group=GLOBAL_OPTIONS,
            help="Output format (default: the config file's format, else table).",
        ),
    ] = None,
) -> int:
    """Run the command named by `arguments` with a session built from the global options."""
    command, bound, wants_session = app.parse_args(arguments)
    if not wants_session:
        return _exit_status(command(*bound.args, **bound.kwargs))
    options = Options(token=token, base_url=base_url, format=output_format)
    config = load_config(options, os.environ)
    with open_session(config, Console(markup=False)) as session:
        extra = dict.fromkeys(wants_session, session)
        return _exit_status(command(*bound.args, **bound.kwargs, **extra))


def _exit_status(result: Any) -> int:
    return result if isinstance(result, int) else 0


def main() -> None:
    """The console script: no traceback reaches the user, only `error: <message>`."""
    try:
        status = app.meta(sys.argv[1:], result_action="return_value")
    except CliError as error:
        print(f"error: {visible(str(error))}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 130
    except Exception as error:
        print(f"error: unexpected {type(error).__name__}: {visible(str(error))}", file=sys.stderr)
        status = 1
    sys.exit(_exit_status(status))
