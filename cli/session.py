"""What every command gets: the API client and the output, built from the resolved config."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from cyclopts import Parameter
from rich.console import Console

from cli.client import ApiClient, open_api_client
from cli.columns import Kind
from cli.config import ClientConfig
from cli.formatting import Output


@dataclass(frozen=True)
class CliSession:
    api: ApiClient
    output: Output

    def show(
        self,
        data: Any,
        *,
        kind: Kind | None = None,
        reveal_secrets: bool = False,
        all_fields: bool = False,
    ) -> None:
        self.output.show(data, kind=kind, reveal_secrets=reveal_secrets, all_fields=all_fields)

    def note(self, line: str | None) -> None:
        if line is not None:
            self.output.note(line)


Session = Annotated[CliSession, Parameter(parse=False)]
"""Declare `*, session: Session` in a command to receive the session (not a CLI option)."""

AllFields = Annotated[
    bool,
    Parameter(
        name="--all", help="Every field, not only the key ones (-o json: the data).", negative=()
    ),
]
"""The `--all` option of the commands that show one record."""


@contextmanager
def open_session(config: ClientConfig, console: Console) -> Iterator[CliSession]:
    with open_api_client(config.api_url, config.token) as api:
        yield CliSession(api=api, output=Output(config.format, console))
