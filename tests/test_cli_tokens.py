"""The real `proxy-client` as a subprocess against a real in-process gateway."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import yaml

from oauthproxy.serve import Ready
from tests.conftest import free_port, venv_bin

CLIENT_VARIABLES = (
    "TOKEN",
    "ADMIN_TOKEN",
    "API_URL",
    "OAUTHPROXY_DATA_DIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
)
OWN_SECRET = "my-own-secret-0123456789abcdefghijklmnop"
WRAPPER = Path(__file__).resolve().parents[1] / "scripts" / "just"


@dataclass(frozen=True)
class Completed:
    status: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Cli:
    """Runs `proxy-client` with an environment that reaches the test's gateway as admin."""

    env: Mapping[str, str]

    async def run(self, *args: str, env: Mapping[str, str | None] | None = None) -> Completed:
        """Run the CLI; `env` changes the environment, None unsetting a variable."""
        merged = {**self.env, **(env or {})}
        process = await trio.run_process(
            [venv_bin("proxy-client"), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={name: value for name, value in merged.items() if value is not None},
        )
        return Completed(process.returncode, process.stdout.decode(), process.stderr.decode())

    async def ok(self, *args: str, env: Mapping[str, str | None] | None = None) -> str:
        completed = await self.run(*args, env=env)
        assert (completed.status, completed.stderr) == (0, ""), completed
        return completed.stdout

    async def json(self, *args: str, env: Mapping[str, str | None] | None = None) -> Any:
        return json.loads(await self.ok("--format", "json", *args, env=env))

    async def fails(self, *args: str, env: Mapping[str, str | None] | None = None) -> str:
        """The error line of a run that must fail cleanly: exit 1, nothing on stdout."""
        completed = await self.run(*args, env=env)
        assert (completed.status, completed.stdout) == (1, ""), completed
        assert "Traceback" not in completed.stderr
        assert completed.stderr.count("\n") == 1
        return completed.stderr.rstrip("\n")


@pytest.fixture
async def cli(gateway: Ready, tmp_path: Path) -> Cli:
    return cli_for(gateway, tmp_path)


def cli_for(gateway: Ready, tmp_path: Path) -> Cli:
    """A `Cli` reaching `gateway` as its admin, with a home and config of its own."""
    env = {name: value for name, value in os.environ.items() if name not in CLIENT_VARIABLES}
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        OAUTHPROXY_DATA_DIR=str(tmp_path / "no-gateway-data"),
        API_URL=gateway.api_url,
        TOKEN=gateway.admin_token.secret,
        COLUMNS="200",
    )
    return Cli(env)


def names(tokens: list[dict[str, Any]]) -> list[str]:
    return [token["name"] for token in tokens]


async def test_generated_token_is_listed_in_every_format(cli: Cli) -> None:
    created = await cli.json("token", "generate", "ci-bot", "--email", "bot@example.com")
    assert (created["name"], created["cert_email"]) == ("ci-bot", "bot@example.com")

    listed = await cli.json("token", "list")
    assert names(listed) == ["admin", "ci-bot"]
    assert yaml.safe_load(await cli.ok("token", "list", "--format", "yaml")) == listed
    rows = list(csv.DictReader(io.StringIO(await cli.ok("--format", "csv", "token", "list"))))
    assert [(row["name"], row["cert_email"]) for row in rows] == [
        (token["name"], token["cert_email"] or "") for token in listed
    ]

    table = await cli.ok("token", "list")
    assert "ci-bot" in table
    assert "bot@example.com" in table
    assert re.search(r"│ (just now|\d+s ago) ", table)
    assert table.rstrip().endswith("Summary: 2 tokens | 1 admin")
    assert "\x1b[" not in table
    assert created["token"] not in table


async def test_show_reveals_the_secret_that_then_authenticates(cli: Cli) -> None:
    await cli.ok("token", "generate", "dev")
    shown = await cli.json("token", "show", "dev")
    assert shown["token"] in await cli.ok("token", "show", "dev")

    info = await cli.json("token", "info", env={"TOKEN": shown["token"]})
    assert (info["name"], info["is_admin"]) == ("dev", False)

    viewed = await cli.json("token", "get", "dev")
    assert "token" not in viewed
    assert shown["token"] not in await cli.ok("token", "get", "dev")


async def test_create_with_your_own_secret(cli: Cli) -> None:
    await cli.ok("token", "create", "mine", "--value", OWN_SECRET, "--email", "me@example.com")
    info = await cli.json("token", "info", env={"TOKEN": OWN_SECRET})
    assert (info["name"], info["cert_email"]) == ("mine", "me@example.com")

    error = await cli.fails("token", "create", "short", "--value", "too-short")
    assert error.startswith("error: token: ")
    assert error.endswith("(field: token)")


async def test_email_update(cli: Cli) -> None:
    await cli.ok("token", "generate", "dev", "--email", "old@example.com")
    assert "new@example.com" in await cli.ok("token", "email", "dev", "new@example.com")
    assert (await cli.json("token", "get", "dev"))["cert_email"] == "new@example.com"


async def test_github_users_from_the_cli_the_recipe_and_a_backup(cli: Cli, tmp_path: Path) -> None:
    created = await cli.json("token", "generate", "ops", "--github-user", "alice")
    assert "github_users" not in created  # the secret's view; `get` shows the logins
    assert (await cli.json("token", "get", "ops"))["github_users"] == ["alice"]
    changed = await cli.json("token", "github-users", "ops", "Bob", "carol,dave")
    assert changed["github_users"] == ["Bob", "carol", "dave"]
    assert "Bob, carol, dave" in await cli.ok("token", "list")

    conflict = await cli.fails("token", "generate", "dev", "--github-user", "BOB")
    assert conflict.startswith("error: the GitHub user bob already signs in as the token 'ops'")
    assert conflict.endswith("(field: github_users)")
    secret = (await cli.json("token", "generate", "dev"))["token"]
    refused = await cli.fails("token", "github-users", "dev", "eve", env={"TOKEN": secret})
    assert refused == "error: this needs the admin token (field: Authorization)"

    saved = tmp_path / "backup.yaml"
    await cli.ok("config", "save", str(saved))
    assert yaml.safe_load(saved.read_text())["tokens"][1]["github_users"] == [
        "Bob",
        "carol",
        "dave",
    ]
    await cli.ok("token", "delete", "ops")
    await cli.ok("config", "load", str(saved))
    assert (await cli.json("token", "get", "ops"))["github_users"] == ["Bob", "carol", "dave"]

    recipe = await trio.run_process(
        [str(WRAPPER), "token-github-users", "ops", ""],
        env=dict(cli.env),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert (recipe.returncode, recipe.stderr) == (0, b""), recipe
    assert (await cli.json("token", "get", "ops"))["github_users"] == []


async def test_delete(cli: Cli) -> None:
    await cli.ok("token", "generate", "temporary")
    deleted = await cli.json("token", "delete", "temporary")
    assert deleted["name"] == "temporary"
    assert names(await cli.json("token", "list")) == ["admin"]
    assert await cli.fails("token", "delete", "temporary") == (
        "error: token 'temporary' not found (field: token)"
    )


async def test_a_non_admin_token_sees_itself_and_cannot_create(cli: Cli) -> None:
    secret = (await cli.json("token", "generate", "dev"))["token"]
    as_dev = {"TOKEN": secret}
    assert (await cli.ok("token", "list", env=as_dev)).rstrip().endswith("Summary: 1 token")
    assert await cli.fails("token", "generate", "other", env=as_dev) == (
        "error: this needs the admin token (field: Authorization)"
    )


async def test_a_wrong_token_gives_a_clean_error(cli: Cli) -> None:
    error = await cli.fails("token", "list", env={"TOKEN": "not-a-real-token"})
    assert error == "error: the bearer token is not valid (field: Authorization)"


async def test_an_unreachable_gateway_gives_a_clean_error(cli: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert await cli.fails("--base-url", url, "token", "list") == (
        f"error: cannot reach the gateway at {url} — is it running? (just run)"
    )


async def test_no_token_anywhere_says_where_to_put_one(cli: Cli) -> None:
    error = await cli.fails("token", "info", env={"TOKEN": None})
    assert error.startswith("error: no token: pass --token, set TOKEN")


async def test_the_token_option_overrides_the_environment(cli: Cli, gateway: Ready) -> None:
    wrong = {"TOKEN": "not-a-real-token"}
    info = await cli.json("token", "info", "--token", gateway.admin_token.secret, env=wrong)
    assert info["name"] == "admin"


async def test_config_file_is_used_when_the_environment_is_unset(
    cli: Cli, gateway: Ready, tmp_path: Path
) -> None:
    config = tmp_path / "config" / "proxy-client" / "config.yml"
    config.parent.mkdir(parents=True)
    settings = {"api_url": gateway.api_url, "token": gateway.admin_token.secret, "format": "json"}
    config.write_text(yaml.safe_dump(settings))
    unset = {"API_URL": None, "TOKEN": None}
    assert json.loads(await cli.ok("token", "info", env=unset))["name"] == "admin"

    config.write_text("colour: blue\n")
    assert "unknown key 'colour'" in await cli.fails("token", "info", env=unset)


async def test_the_local_gateways_admin_token_file_is_the_last_resort(
    cli: Cli, gateway: Ready
) -> None:
    local = {"TOKEN": None, "OAUTHPROXY_DATA_DIR": str(gateway.data_dir)}
    assert (await cli.json("token", "info", env=local))["name"] == "admin"


async def test_health_needs_no_token(cli: Cli) -> None:
    anonymous = {"TOKEN": None}
    report = await cli.json("health", env=anonymous)
    assert report["status"] == "healthy"
    table = await cli.ok("health", env=anonymous)
    assert "● healthy" in table
    assert "components.redis.status" in table


async def test_help_lists_commands_and_global_options(cli: Cli) -> None:
    root = await cli.ok("--help")
    for expected in ("token", "health", "--token", "--base-url", "--format"):
        assert expected in root
    group = await cli.ok("token", "--help")
    for command in ("list", "show", "get", "info", "create", "generate", "delete", "email"):
        assert command in group
    assert "--email" in await cli.ok("token", "generate", "--help")


async def test_a_recipes_token_reaches_the_cli_in_its_environment_only(cli: Cli) -> None:
    """A recipe's `token` argument went on as `proxy-client --token <secret>`: any local user
    read it with `ps` for as long as the command ran (`logs-follow`: for hours). It reaches the
    CLI as TOKEN in its environment, which other users cannot read, and still authenticates."""
    justfile = (WRAPPER.parents[1] / "justfile").read_text()
    assert "--token" not in justfile
    # nor as the shell's positional arguments (`sh -cu <line> <recipe> <arguments...>`), which
    # only the recipes that read "$@" or "$1" get
    assert "set positional-arguments" not in justfile
    owner = (await cli.json("token", "generate", "owner"))["token"]
    recipe = await trio.run_process(
        [str(WRAPPER), "token-list", owner],
        env=dict(cli.env),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert recipe.returncode == 0, recipe.stderr
    listed = recipe.stdout.decode()
    assert "owner" in listed and "Summary: 1 token" in listed  # the owner's own view
