"""The storage package's layers: per-entity repositories that know nothing of each other, and
the modules above them that own every rule joining two kinds of record. Read from the source,
so a repository that starts importing another fails here before it can grow a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import oauthproxy.storage

PACKAGE = Path(oauthproxy.storage.__file__).parent

SHARED = {"keys", "base", "editing", "events", "windows"}
"""What every repository may build on: the key schema, JSON and errors, edits, the stream, and
the fixed-window counter behind the per-IP rate limits."""

REPOSITORIES = {
    "acme_accounts",
    "certificates",
    "challenges",
    "dashboard",
    "locks",
    "ports",
    "proxies",
    "proxy_logins",
    "resources",
    "routes",
    "services",
    "tokens",
    "workflow",
}

ABOVE = {"cascades", "orphans"}
"""Rules joining kinds of record: links and cascades; the orphan sweep, which uses them."""

APART = {"child", "console", "embedded", "epoch", "oauth", "oauth_sessions", "replica_traces",
         "request_logs", "request_log_script"}  # fmt: skip
"""Not records of the tenant model: the embedded Redis process (its supervised child and its
console), the marker that tells a Redis that lost its data, the OAuth server's store (whose
sessions are one of its parts), what replicas leave behind on the workflow stream (swept for
workers that no longer run), and the request log (and its write script)."""


def storage_imports(module: str) -> set[str]:
    """The `oauthproxy.storage` modules `module` imports, lazily or not."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module == "oauthproxy.storage":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("oauthproxy.storage."):
                found.add(node.module.removeprefix("oauthproxy.storage."))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("oauthproxy.storage."):
                    found.add(alias.name.removeprefix("oauthproxy.storage."))
    return found


def test_no_repository_imports_another() -> None:
    offending = {
        module: sorted(storage_imports(module) - SHARED)
        for module in sorted(REPOSITORIES)
        if storage_imports(module) - SHARED
    }
    assert offending == {}


def test_the_cross_entity_modules_sit_above_and_nothing_below_imports_them() -> None:
    for module in REPOSITORIES | SHARED:
        assert not storage_imports(module) & ABOVE, module
    assert "cascades" in storage_imports("orphans")
    assert not storage_imports("cascades") & {"orphans"}


def test_every_storage_module_has_a_layer() -> None:
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules - REPOSITORIES - SHARED - ABOVE - APART == set()
