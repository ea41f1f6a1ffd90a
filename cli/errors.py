"""The one error the CLI shows the user: a one-line message on stderr and exit status 1."""

from __future__ import annotations


class CliError(Exception):
    """Something the user can act on; `main` prints it as `error: <message>` and exits 1."""
