"""Where the client's settings come from: options, then environment, then the config file.

`resolve_config` is the pure decision; `load_config` only reads the two files it needs.

- token: `--token` > `TOKEN` > `ADMIN_TOKEN` > config `token` > the local gateway's admin-token file
- base URL: `--base-url` > `API_URL` > config `api_url` > `http://localhost:9000`
- format: `--format` > config `format` > `table`
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs
import yaml

from cli.errors import CliError

DEFAULT_API_URL = "http://localhost:9000"
CONFIG_KEYS = ("api_url", "token", "format")


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"
    CSV = "csv"


@dataclass(frozen=True)
class Options:
    """The global command-line options; None means not given."""

    token: str | None = None
    base_url: str | None = None
    format: OutputFormat | None = None


@dataclass(frozen=True)
class ClientConfig:
    api_url: str
    token: str | None
    format: OutputFormat


def _first(*candidates: str | None) -> str | None:
    return next((value for value in candidates if value), None)


def _checked_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise CliError(f"the base URL must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


def _checked_format(value: str) -> OutputFormat:
    try:
        return OutputFormat(value)
    except ValueError:
        choices = ", ".join(OutputFormat)
        raise CliError(f"unknown output format {value!r} (choose {choices})") from None


def resolve_config(
    options: Options,
    env: Mapping[str, str],
    file_values: Mapping[str, str],
    admin_token: str | None,
) -> ClientConfig:
    """Combine the sources, highest precedence first (see the module docstring)."""
    token = _first(
        options.token, env.get("TOKEN"), env.get("ADMIN_TOKEN"), file_values.get("token")
    )
    api_url = _checked_url(
        _first(options.base_url, env.get("API_URL"), file_values.get("api_url")) or DEFAULT_API_URL
    )
    output_format = options.format or _checked_format(file_values.get("format") or "table")
    if not _on_this_machine(api_url):
        admin_token = None  # this machine's admin token is for this machine's gateway only
    return ClientConfig(api_url=api_url, token=token or admin_token, format=output_format)


def _on_this_machine(api_url: str) -> bool:
    """Whether the API is this machine's (a loopback address, or `localhost`): only then is the
    admin-token file of a gateway on this machine a token for it. (It went to any base URL: a
    `--base-url` of someone else's server received this gateway's admin token.)"""
    host = (urlsplit(api_url).hostname or "").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def config_file_path(env: Mapping[str, str]) -> Path:
    """`$XDG_CONFIG_HOME/proxy-client/config.yml`, by default under `~/.config`."""
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    config_home = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    return config_home / "proxy-client" / "config.yml"


def admin_token_path(env: Mapping[str, str]) -> Path:
    """The file where a gateway on this machine keeps its admin token."""
    data_dir = env.get("OAUTHPROXY_DATA_DIR") or platformdirs.user_data_dir(
        "oauthproxy", appauthor=False
    )
    return Path(data_dir) / "admin-token"


def parse_config_file(text: str, path: Path) -> dict[str, str]:
    """The config file's values: a YAML mapping of `api_url`, `token` and `format` strings."""
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CliError(f"{path} is not valid YAML: {error}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise CliError(f"{path} must be a mapping of {', '.join(CONFIG_KEYS)}")
    for key, value in values.items():
        if key not in CONFIG_KEYS:
            raise CliError(f"{path}: unknown key {key!r} (expected {', '.join(CONFIG_KEYS)})")
        if not isinstance(value, str):
            raise CliError(f"{path}: {key} must be a string")
    return values


def _read_config_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror}") from None
    return parse_config_file(text, path)


def _read_admin_token(path: Path) -> str | None:
    """The local gateway's admin token, when this user can read it; a fallback, so never fatal."""
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def load_config(options: Options, env: Mapping[str, str]) -> ClientConfig:
    file_values = _read_config_file(config_file_path(env))
    admin_token = _read_admin_token(admin_token_path(env))
    return resolve_config(options, env, file_values, admin_token)
