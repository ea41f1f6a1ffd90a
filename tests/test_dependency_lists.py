"""pixi.toml lists the same packages as pyproject.toml, and every runtime dependency is imported.

pyproject.toml (locked in uv.lock) is the source of truth; pixi.toml repeats its lists for pixi
users. Names are compared (PEP 503-normalised, extras dropped), not version bounds: conda-forge and
PyPI spell some constraints differently."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PIXI_TOOLS = {"python", "just"}
"""What pixi installs that pyproject does not list: the interpreter and the task runner."""

IMPORT_NAMES = {
    "pyyaml": "yaml",
    "python-on-whales": "python_on_whales",
    "google-re2": "re2",
    "pydantic-settings": "pydantic_settings",
    "quart-trio": "quart_trio",
    "quart-schema": "quart_schema",
    "prometheus-client": "prometheus_client",
}


def normalised(requirement: str) -> str:
    name = re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pixi() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pixi.toml").read_text())


def pixi_names(*tables: dict[str, Any]) -> set[str]:
    return {normalised(name) for table in tables for name in table}


def test_pixi_runtime_dependencies_are_pyprojects() -> None:
    wanted = {normalised(item) for item in pyproject()["project"]["dependencies"]}
    listed = pixi_names(pixi()["dependencies"], pixi()["pypi-dependencies"])
    assert listed - PIXI_TOOLS - {"oauthproxy"} == wanted


def test_pixi_dev_dependencies_are_pyprojects() -> None:
    wanted = {normalised(item) for item in pyproject()["dependency-groups"]["dev"]}
    dev = pixi()["feature"]["dev"]
    assert pixi_names(dev["dependencies"], dev["pypi-dependencies"]) == wanted


def test_every_runtime_dependency_is_imported_by_the_code() -> None:
    folders = (ROOT / "oauthproxy", ROOT / "cli")
    sources = [path.read_text() for folder in folders for path in folder.rglob("*.py")]
    unused = []
    for requirement in pyproject()["project"]["dependencies"]:
        name = normalised(requirement)
        module = IMPORT_NAMES.get(name, name.replace("-", "_"))
        statement = re.compile(rf"^\s*(from|import) {re.escape(module)}(\.|\s|$)", re.MULTILINE)
        if not any(statement.search(text) for text in sources):
            unused.append(name)
    assert unused == []
