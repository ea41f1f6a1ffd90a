"""`--wait`: follow a certificate's issuance until it is issued or failed, with a spinner.

Issuance runs in the gateway's background; its status endpoint says which stage the latest
attempt is at (queued, ordering, validating, finalizing, …) and what the certificate is
(pending, renewing, active, error). Waiting polls it, shows the stage beside a rich spinner on
stderr (only on a terminal: piped output stays clean), and ends at `active` (issued) or
`error`/`expired` (failed), or at the timeout.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from cyclopts import Parameter
from rich.console import Console

from cli.client import ApiClient, api_path
from cli.errors import CliError

POLL_SECONDS = 0.5
ISSUED = frozenset({"active"})
FAILED = frozenset({"error", "expired"})

Wait = Annotated[
    bool,
    Parameter(help="Wait until the certificate is issued or fails (see --timeout).", negative=()),
]
Timeout = Annotated[float, Parameter(help="With --wait: give up after this many seconds.")]
DEFAULT_TIMEOUT = 300.0


def describe(progress: dict[str, Any]) -> str:
    """ "certificate web: validating (Answering the HTTP-01 challenge)" from a status answer."""
    stage = progress.get("status") or progress.get("certificate_status")
    message = progress.get("message")
    return f"certificate {progress.get('cert_name')}: {stage}" + (
        f" ({message})" if message else ""
    )


def wait_for_certificate(
    api: ApiClient, name: str, *, timeout: float, console: Console
) -> dict[str, Any]:
    """The certificate once issued; `CliError` when it failed or `timeout` seconds passed."""
    path = api_path("certificates", name, "status")
    deadline = time.monotonic() + timeout
    with console.status(f"certificate {name}: waiting for issuance") as spinner:
        while True:
            progress: dict[str, Any] = api.get(path)
            state = progress.get("certificate_status")
            if state in ISSUED:
                return dict(api.get(api_path("certificates", name)))
            if state in FAILED:
                error = progress.get("last_error") or progress.get("message") or state
                raise CliError(f"certificate {name} failed: {' '.join(str(error).split())}")
            if time.monotonic() >= deadline:
                raise CliError(
                    f"certificate {name} is still {state} after {timeout:g} s "
                    f"({describe(progress)}); just cert-status {name} follows it"
                )
            spinner.update(describe(progress))
            time.sleep(POLL_SECONDS)


def progress_console() -> Console:
    """Where spinners and progress bars go: stderr, so stdout stays the command's output."""
    return Console(stderr=True, markup=False)
