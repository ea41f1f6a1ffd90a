"""`just up|down|restart|rebuild|shell|logs-service` say in one line each what they are missing
(.env, REDIS_PASSWORD, docker, its compose plugin) before docker compose would fail on its own
(scripts/compose). Each case runs the real recipe from a copy of the justfile, in a directory of
its own, with a PATH that has or lacks the real docker CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import project_root

RECIPES = [["up"], ["down"], ["restart"], ["rebuild", "api"], ["shell"], ["logs-service"]]
NO_ENV = "no .env in {root}: create it with 'cp .env.example .env' and set REDIS_PASSWORD in it"
NO_PASSWORD = "REDIS_PASSWORD is not set in .env: the redis service requires one"
NO_DOCKER = "docker is not installed: the Docker services need Docker Engine with the compose"
NO_COMPOSE = "docker compose is not available (docker has no compose plugin): install"
# What the recipes and scripts/compose run besides shell builtins and docker.
TOOLS = ("sh", "dirname", "grep", "stat")


def _program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed")
    return found


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of what the recipes use: the justfile, scripts/compose and compose.yaml."""
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    for name in ("justfile", "compose.yaml", "scripts/compose"):
        shutil.copy2(project_root() / name, root / name)
    return root


def run_recipe(project: Path, recipe: list[str], *, with_docker: bool) -> tuple[int, list[str]]:
    """Run `just RECIPE` with a PATH of only the tools it needs (and docker when asked)."""
    bin_dir = project.parent / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in TOOLS + (("docker",) if with_docker else ()):
        if not (bin_dir / name).exists():
            (bin_dir / name).symlink_to(_program(name))
    just = project_root() / ".tools" / "bin" / "just"
    if not just.exists():
        pytest.fail("just is not installed in .tools/ (run ./scripts/just once)")
    done = subprocess.run(
        [str(just), "--justfile", str(project / "justfile"), *recipe],
        cwd=project,
        env={"PATH": str(bin_dir), "HOME": str(project.parent)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stderr.splitlines()


def compose_installed() -> bool:
    done = subprocess.run([_program("docker"), "compose", "version"], capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("recipe", RECIPES, ids=" ".join)
def test_without_env_and_docker_each_missing_thing_is_one_line(
    project: Path, recipe: list[str]
) -> None:
    code, lines = run_recipe(project, recipe, with_docker=False)
    assert code == 1
    assert len(lines) == 2, lines
    assert lines[0].startswith(NO_ENV.format(root=project)), lines
    assert lines[1].startswith(NO_DOCKER), lines


def test_an_env_without_redis_password_is_named(project: Path) -> None:
    (project / ".env").write_text("# REDIS_PASSWORD=\nREDIS_PASSWORD=\nBASE_DOMAIN=example.com\n")
    code, lines = run_recipe(project, ["up"], with_docker=True)
    assert code == 1
    assert lines[0].startswith(NO_PASSWORD), lines
    if compose_installed():
        assert len(lines) == 1, lines
    else:
        assert len(lines) == 2 and lines[1].startswith(NO_COMPOSE), lines


def test_docker_without_its_compose_plugin_is_named(project: Path) -> None:
    """With .env complete, only the compose plugin can be missing: where it is installed the
    recipe gets past every check to docker compose itself (here against no engine)."""
    (project / ".env").write_text("REDIS_PASSWORD=secret-0123\nDOCKER_HOST=unix:///nonexistent\n")
    code, lines = run_recipe(project, ["logs-service", "api"], with_docker=True)
    assert code != 0
    ours = [line for line in lines if line.startswith((NO_ENV[:8], NO_PASSWORD, NO_DOCKER))]
    assert ours == [], lines
    if compose_installed():
        assert not any(line.startswith(NO_COMPOSE) for line in lines), lines
    else:
        assert len(lines) == 1 and lines[0].startswith(NO_COMPOSE), lines


def test_compose_yaml_checks_both_services_health_and_gives_the_gateway_the_engine() -> None:
    """What `just up` relies on (the api healthcheck's command itself runs in the image in
    test_container.py)."""
    services = yaml.safe_load((project_root() / "compose.yaml").read_text())["services"]
    assert set(services) == {"api", "redis"}
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
    api = services["api"]
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "/var/run/docker.sock:/var/run/docker.sock" in api["volumes"]
    assert api["group_add"] == ["${DOCKER_GID:-999}"]
    assert "127.0.0.1:9000:9000" in api["ports"]  # the admin API: this host only
    # owners' services share a network with the gateway, not with Redis
    compose = yaml.safe_load((project_root() / "compose.yaml").read_text())
    services_network = compose["networks"]["services"]["name"]
    assert api["environment"]["OWNER_DOCKER_NETWORKS"] == services_network
    assert set(api["networks"]) == {"default", "services"}
    assert "networks" not in services["redis"]  # default only
    # the gateway's container joins each owner's network (its hostname names it)
    assert api["environment"]["GATEWAY_CONTAINER"] == "self"
    # it joins every owner's network, so it routes nothing between them (the gateway checks)
    assert api["sysctls"]["net.ipv4.ip_forward"] == 0
