"""A loopback HTTPS server publishing Client ID Metadata Documents, signed by a test CA (the
gateway fetches from loopback when OAUTH_CIMD_ALLOW_LOOPBACK is set and trusts the CA through
OAUTH_CA_BUNDLE).

A test module uses the fixtures by naming them: `pki = document_server.pki`, and so on."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response
from quart_trio import QuartTrio

from tests.oauth_helpers import REDIRECT_URI
from tests.tls import TestPKI, make_pki


@dataclass
class DocumentServer:
    """Serves `/{name}` from `documents`; counts the fetches."""

    documents: dict[str, Response | dict[str, Any]] = field(default_factory=dict)
    base: str = ""
    fetches: int = 0

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def publish(self, name: str, **changes: Any) -> str:
        url = self.url(name)
        document = {
            "client_id": url,
            "client_name": "Metadata Client",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            **changes,
        }
        self.documents[name] = document
        return url


async def serve_documents(
    server: DocumentServer, pki: TestPKI, *, task_status: trio.TaskStatus[None]
) -> None:
    app = QuartTrio("client-documents")

    @app.get("/<name>")
    async def document(name: str) -> Response:
        server.fetches += 1
        found = server.documents.get(name)
        if found is None:
            return Response("not found", 404)
        if isinstance(found, Response):
            return found
        return Response(json.dumps(found), 200, {"Content-Type": "application/json"})

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.certfile, config.keyfile = str(pki.cert_file), str(pki.key_file)
    config.accesslog = config.errorlog = None
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(functools.partial(serve, app, config))
        server.base = "https://localhost:" + binds[0].rsplit(":", 1)[1]
        task_status.started()


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return make_pki(tmp_path)


@pytest.fixture
async def documents(nursery: trio.Nursery, pki: TestPKI) -> DocumentServer:
    server = DocumentServer()
    await nursery.start(serve_documents, server, pki)
    return server
