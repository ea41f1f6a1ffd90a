"""The docs' shell examples, run against a live gateway: the README and docs/*.md cannot go stale.

Every fenced `bash` block in README.md and docs/*.md carries a marker on the line before it:

- `<!-- doc-test: run -->`: the block runs here, in order with the file's other blocks, against
  one fresh gateway per file, and must exit 0 (`bash -e -o pipefail`);
- `<!-- doc-test: skip: REASON -->`: it cannot run in a test (it starts the gateway itself,
  needs GitHub, real DNS or Docker Compose, or follows a stream forever); the REASON is listed;
- `<!-- doc-test: output -->` before a ```text block right after a run block: what that run
  printed; each non-blank line must appear in its output (`…` stands for anything).

What the examples assume is made true by the environment, the one the docs tell a newcomer to
use: the admin API at `http://127.0.0.1:9000` (the text is rewritten to the test gateway's
address), `TOKEN`/`ADMIN_TOKEN` unset but the admin token readable (`ADMIN_TOKEN` is set, as
`.env` would), `ADMIN_EMAIL` set, Redis at `REDIS_URL`. Blocks run in a scratch directory, with
`./scripts/` pointing at this checkout's scripts, so files they write land there.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.test_certificates_api import UNREACHABLE
from tests.test_cli_tokens import CLIENT_VARIABLES

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
DOCUMENTED_API = ("http://127.0.0.1:9000", "http://localhost:9000")
ADMIN_EMAIL = "ops@example.com"
BLOCK = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<code>.*?)^```$", re.S | re.M)
MARKER = re.compile(r"<!-- doc-test: (?P<kind>run|skip|output)(?:: (?P<reason>.+?))? -->")
SHELL = frozenset({"bash", "sh", "shell"})
HANG_SECONDS = 300  # a block that never ends (a follow) fails instead of hanging the suite


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    code: str
    marker: str | None
    reason: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the doc-test marker on the line before it."""
    text = path.read_text()
    found = []
    for match in BLOCK.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.fullmatch(before.strip())
        found.append(
            Block(
                path,
                text.count("\n", 0, match.start()) + 1,
                match["lang"],
                match["code"],
                marker["kind"] if marker else None,
                marker["reason"] if marker else None,
            )
        )
    return found


def all_blocks() -> list[Block]:
    return [block for path in DOCS for block in blocks_of(path)]


def runnable_files() -> list[Path]:
    return [path for path in DOCS if any(b.marker == "run" for b in blocks_of(path))]


def test_every_shell_block_says_whether_it_runs() -> None:
    unmarked = [b.where for b in all_blocks() if b.lang in SHELL and b.marker is None]
    assert unmarked == [], "mark each with <!-- doc-test: run --> or <!-- doc-test: skip: why -->"
    wrong = [b.where for b in all_blocks() if b.marker in ("run", "skip") and b.lang not in SHELL]
    assert wrong == []


def test_skipped_blocks_say_why() -> None:
    """The blocks that cannot run in a test, listed with their reasons (-s prints them)."""
    skipped = [(b.where, b.reason) for b in all_blocks() if b.marker == "skip"]
    for where, reason in skipped:
        print(f"not run: {where}: {reason}")
    assert [where for where, reason in skipped if not reason] == []
    runs = sum(1 for b in all_blocks() if b.marker == "run")
    assert runs > len(skipped)  # the docs are mostly examples that run


def test_output_blocks_follow_a_run_block() -> None:
    for path in DOCS:
        blocks = blocks_of(path)
        for previous, block in itertools.pairwise(blocks):
            if block.marker == "output":
                assert previous.marker == "run", block.where


def expected_lines(output_block: Block) -> list[re.Pattern[str]]:
    lines = [line.strip() for line in output_block.code.splitlines() if line.strip()]
    return [re.compile(".*".join(map(re.escape, line.split("…")))) for line in lines]


@pytest.fixture
async def gateway(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> Ready:
    """A gateway as the docs assume one: ADMIN_EMAIL set; its ACME server does not answer (an
    order fails in the background, as with no network)."""
    settings = make_settings(acme_directory_url=UNREACHABLE, admin_email=ADMIN_EMAIL)
    ready: Ready = await nursery.start(functools.partial(serve, settings, handle_signals=False))
    return ready


def environment(gateway: Ready, redis_url: str, tmp_path: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in CLIENT_VARIABLES}
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        OAUTHPROXY_DATA_DIR=str(tmp_path / "data"),
        API_URL=gateway.api_url,
        ADMIN_TOKEN=gateway.admin_token.secret,
        ADMIN_EMAIL=ADMIN_EMAIL,
        REDIS_URL=redis_url,
        COLUMNS="160",
    )
    return env


def as_run_here(code: str, api_url: str) -> str:
    for documented in DOCUMENTED_API:
        code = code.replace(documented, api_url)
    return code.replace("./scripts/", f"{ROOT}/scripts/")


async def run_block(block: Block, env: Mapping[str, str], workdir: Path, api_url: str) -> str:
    script = as_run_here(block.code, api_url)
    with trio.fail_after(HANG_SECONDS):
        done = await trio.run_process(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=workdir,
            env=dict(env),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    output = done.stdout.decode()
    assert done.returncode == 0, (
        f"{block.where} exited {done.returncode}\n--- stdout\n{output}\n"
        f"--- stderr\n{done.stderr.decode()}"
    )
    return output


@pytest.mark.parametrize("doc", runnable_files(), ids=lambda path: path.name)
async def test_the_examples_run(
    doc: Path, gateway: Ready, empty_redis: str, tmp_path: Path
) -> None:
    env = environment(gateway, empty_redis, tmp_path)
    workdir = tmp_path / "work"
    workdir.mkdir()
    output = ""
    for block in blocks_of(doc):
        if block.marker == "run":
            output = await run_block(block, env, workdir, gateway.api_url)
        elif block.marker == "output":
            missing = [p.pattern for p in expected_lines(block) if not p.search(output)]
            assert missing == [], f"{block.where}: not in the output:\n{output}"
