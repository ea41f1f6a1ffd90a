"""The README against the code it describes: every recipe, every port setting and every package
is listed, and the wrapper scripts it tells a newcomer to run do run."""

import json
import subprocess
from pathlib import Path

from oauthproxy.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    """The README's text from the heading `title` to the next heading of the same level."""
    level = title.split(" ", 1)[0]
    start = README.index(f"\n{title}\n")
    end = README.find(f"\n{level} ", start + len(title) + 2)
    return README[start : end if end != -1 else None]


def public_recipes() -> list[str]:
    """The recipes `just --list` shows, as just itself parses the justfile."""
    just = [str(ROOT / ".tools/bin/just"), "--justfile", str(ROOT / "justfile")]
    dump = subprocess.run(
        [*just, "--dump", "--dump-format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    recipes = json.loads(dump.stdout)["recipes"]
    return [name for name, recipe in recipes.items() if not recipe["private"]]


def test_every_recipe_has_a_row_in_the_recipe_table() -> None:
    table = section("### just recipes")
    names = public_recipes()
    assert len(names) > 60
    missing = [
        name
        for name in names
        if f"| `{name} " not in table and f"| `{name}` " not in table and name != "default"
    ]
    assert missing == []
    assert "`default`" in table


def test_every_port_setting_is_described() -> None:
    ports = [name.upper() for name in Settings.model_fields if name.endswith("_port")]
    assert "PROXY_PROTOCOL_PORT" in ports
    configuration = section("### Configuration")
    assert [port for port in ports if f"`{port}`" not in configuration] == []


def test_layout_lists_every_package() -> None:
    packages = sorted(p.parent.name for p in (ROOT / "oauthproxy").glob("*/__init__.py"))
    layout = section("## Layout")
    assert [name for name in packages if f"\n  {name}/ " not in layout] == []


def test_proxy_client_wrapper_runs_the_cli() -> None:
    done = subprocess.run(
        [str(ROOT / "scripts/proxy-client"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: proxy-client" in done.stdout


def test_test_deps_names_what_is_missing_in_one_line(tmp_path: Path) -> None:
    # An empty PATH: the programs in /usr/bin and /bin are not found (those in /usr/sbin still are,
    # as the tests themselves look there).
    done = subprocess.run(
        ["/bin/sh", str(ROOT / "scripts/test-deps"), "--check"],
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    line = done.stderr.removesuffix("\n")
    assert "\n" not in line
    assert line.startswith("scripts/test-deps: the tests need these packages, not installed: ")
    for package in ("pebble", "chromium", "busybox-static"):
        assert package in line


def test_test_deps_finds_everything_where_the_suite_runs() -> None:
    done = subprocess.run(
        [str(ROOT / "scripts/test-deps"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_ci_installs_every_package_test_deps_knows() -> None:
    # .ci/run keeps its own apt-get line (it also installs python3-venv before anything runs);
    # this keeps the two lists from drifting apart.
    script = (ROOT / "scripts/test-deps").read_text()
    needs = script.split("needs='", 1)[1].split("'", 1)[0]
    packages = {pair.split(":", 1)[1] for pair in needs.split()}
    apt_line = next(
        line for line in (ROOT / ".ci/run").read_text().splitlines() if " install " in line
    )
    assert packages - set(apt_line.split()) == set()
