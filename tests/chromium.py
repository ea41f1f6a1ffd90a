"""A real headless Chromium (Debian's `/usr/bin/chromium`) driven by PyPI `playwright`.

Playwright's sync API runs in one worker thread per test (`in_chromium`), because its objects
belong to the thread that made them and the test itself runs on Trio. Code in that thread calls
back into the test's Trio run with `trio.from_thread.run`. Nothing is downloaded: `playwright
install` is never run; the browser is the system's.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import pytest
import trio
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    expect,
    sync_playwright,
)

T = TypeVar("T")

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
WAIT_MS = 30_000
"""How long one browser step or `expect` may wait for the page (a deadline, not a measure)."""


def chromium_binary() -> str:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed (apt-get install chromium)")
    return binary


@dataclass
class Traffic:
    """What a page asked for and said: every URL it finished loading, and its errors."""

    origin: str
    loaded: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def finished(self, request: Request) -> None:
        self.loaded.append(request.url)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def foreign(self) -> list[str]:
        """URLs loaded from anywhere but `origin` (a `blob:` of the origin is the origin's)."""
        own = urlsplit(self.origin).netloc
        return [
            url
            for url in self.loaded
            if urlsplit(url.removeprefix("blob:")).netloc != own and not url.startswith("data:")
        ]


async def in_chromium(
    tmp_path: Path,
    origin: str,
    steps: Callable[[Page, Traffic], T],
    *,
    extra_args: Sequence[str] = (),
    ignore_https_errors: bool = False,
) -> tuple[T, Traffic]:
    """Run `steps(page, traffic)` in a fresh Chromium profile, in a worker thread
    (`extra_args`: more command-line switches, such as `--host-resolver-rules`)."""

    def run() -> tuple[T, Traffic]:
        expect.set_options(timeout=WAIT_MS)
        traffic = Traffic(origin)
        with sync_playwright() as playwright:
            context: BrowserContext = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),
                executable_path=chromium_binary(),
                args=[*ARGS, *extra_args],
                headless=True,
                ignore_https_errors=ignore_https_errors,
            )
            try:
                page = context.new_page()
                page.set_default_timeout(WAIT_MS)
                page.on("requestfinished", traffic.finished)
                page.on("console", traffic.console)
                page.on("pageerror", lambda error: traffic.errors.append(str(error)))
                page.on("dialog", lambda dialog: dialog.accept())
                return steps(page, traffic), traffic
            finally:
                context.close()

    return await trio.to_thread.run_sync(run)
