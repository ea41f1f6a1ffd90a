"""A real HTTP backend for data-plane tests: quart-trio on hypercorn, on a free loopback port.

Endpoints: /echo (what arrived), /bytes/{n} (n streamed bytes), /upload (sha256 of the body,
read in streaming), /sse (three events, spaced), /slow/{seconds}, /status/{code}, /ws (echo).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import AsyncIterator

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request, websocket
from quart_trio import QuartTrio

CHUNK = 64 * 1024


def pattern(size: int) -> bytes:
    """Deterministic content of `size` bytes: the same on both ends of a test."""
    block = bytes(range(256)) * (CHUNK // 256)
    whole, rest = divmod(size, CHUNK)
    return block * whole + block[:rest]


def create_backend(name: str) -> QuartTrio:
    app = QuartTrio(f"backend-{name}")

    @app.route("/echo", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])
    @app.route("/echo/<path:rest>", methods=["GET", "POST", "PUT", "DELETE"])
    async def echo(rest: str = "") -> Response:
        body = await request.get_data()
        return Response(
            json.dumps(
                {
                    "backend": name,
                    "method": request.method,
                    "path": request.path,
                    "query": request.query_string.decode(),
                    "headers": {k.lower(): v for k, v in request.headers.items()},
                    "body": body.decode(errors="replace") if isinstance(body, bytes) else body,
                }
            ),
            content_type="application/json",
            headers={"X-Backend": name},
        )

    @app.route("/bytes/<int:size>")
    async def stream_bytes(size: int) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            sent = 0
            while sent < size:
                piece = min(CHUNK, size - sent)
                yield pattern(piece)
                sent += piece

        return Response(chunks(), content_type="application/octet-stream")

    @app.route("/upload", methods=["POST", "PUT"])
    async def upload() -> Response:
        digest = hashlib.sha256()
        length = 0
        async for chunk in request.body:
            digest.update(chunk)
            length += len(chunk)
        return Response(json.dumps({"sha256": digest.hexdigest(), "length": length}))

    @app.route("/sse")
    async def sse() -> Response:
        async def events() -> AsyncIterator[bytes]:
            for number in range(3):
                yield f"id: {number}\ndata: event {number}\n\n".encode()
                await trio.sleep(0.3)

        return Response(events(), content_type="text/event-stream")

    @app.route("/slow/<float:seconds>")
    async def slow(seconds: float) -> Response:
        await trio.sleep(seconds)
        return Response("slow done")

    @app.route("/status/<int:code>")
    async def status(code: int) -> Response:
        return Response(f"status {code}", status=code)

    @app.websocket("/ws")
    async def ws() -> None:
        while True:
            message = await websocket.receive()
            await websocket.send(f"echo: {message}" if isinstance(message, str) else message)

    return app


async def serve_backend(
    name: str,
    *,
    tls: tuple[str, str] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the backend on a free port (HTTPS when `tls` gives (certfile, keyfile))."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    if tls is not None:
        config.certfile, config.keyfile = tls
    config.accesslog = None
    config.errorlog = None
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            functools.partial(serve, create_backend(name), config)
        )
        task_status.started(int(binds[0].rsplit(":", 1)[1]))
