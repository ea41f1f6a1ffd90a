"""Every `service-*` and port recipe of the spec exists with the spec's arguments and expands to
the `proxy-client` command that does it (`just --dry-run`; the commands themselves are tested in
test_cli_docker_services.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from oauthproxy.settings import Settings

WRAPPER = Path(__file__).resolve().parents[1] / "scripts" / "just"


@pytest.mark.parametrize(
    ("recipe", "expected"),
    [
        # the token goes in the environment, never on the command line (`ps` shows those)
        (["service-create", "app", "nginx:1", "", "80", "256m", "0.5", "true", "tok"],
         'TOKEN="${token:-${TOKEN-}}" proxy-client service create \'app\' \'nginx:1\'  '
         "--port '80' --memory '256m' --cpu '0.5' --auto-proxy"),
        (["service-create", "built", "", "./app.Dockerfile"],
         "service create 'built'  --dockerfile './app.Dockerfile'"),
        (["service-create-exposed", "api", "img:1", "8080", "0.0.0.0"],
         "service create 'api' 'img:1' --port '8080' --expose --bind '0.0.0.0' --memory '512m'"),
        (["service-list", "true"], "service list --owned-only"),
        (["service-show", "app"], "service show 'app'"),
        (["service-delete", "app", "false", "true"],
         "service delete 'app' --no-force --delete-proxy"),
        (["service-start", "app"], "service start 'app'"),
        (["service-stop", "app"], "service stop 'app'"),
        (["service-restart", "app"], "service restart 'app'"),
        (["service-logs", "app", "50", "true"], "service logs 'app' '50' --timestamps"),
        (["service-logs", "app", "5", "false", "", "true"], "service logs 'app' '5'  --follow"),
        (["service-stats", "app"], "service stats 'app'"),
        (["service-proxy-create", "app", "app.example.com", "true"],
         "service proxy-create 'app' 'app.example.com' --https"),
        (["service-cleanup"], "service cleanup"),
        (["service-port-add", "app", "13000", "0.0.0.0", "src-token"],
         "service port-add 'app' '13000' '0.0.0.0' 'src-token'"),
        (["service-port-remove", "app", "http"], "service port-remove 'app' 'http'"),
        (["service-port-list", "app"], "service port-list 'app'"),
        (["service-port-check", "13000"], "service port-check '13000' '127.0.0.1'"),
        (["service-ports-global", "true"], "service ports-global --available-only"),
        (["service-list-all", "docker"], "service list-all --type 'docker'"),
    ],
)  # fmt: skip
def test_recipe_expands_to_its_command(recipe: list[str], expected: str) -> None:
    shown = subprocess.run(
        [str(WRAPPER), "--dry-run", *recipe],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert expected in shown.stderr, shown.stderr


def test_compose_gives_the_gateway_the_engine_socket_through_docker_gid() -> None:
    """The gateway in compose.yaml runs as a non-root user: it reaches the engine at DOCKER_HOST's
    default through the host's socket, mounted, and the socket's group, DOCKER_GID."""
    compose = yaml.safe_load((WRAPPER.parents[1] / "compose.yaml").read_text())
    api = compose["services"]["api"]
    socket_path = Settings.model_fields["docker_host"].default.removeprefix("unix://")
    assert f"{socket_path}:{socket_path}" in api["volumes"]
    assert api["group_add"] == ["${DOCKER_GID:-999}"]
    assert Settings.model_fields["docker_gid"].default == 999
