"""An MCP server built with the official SDK (streamable HTTP), for the end-to-end tests.

Run as `python -m tests.mcp_server PORT HOSTNAME...`: it serves `http://127.0.0.1:PORT/mcp` and,
keeping the SDK's DNS-rebinding protection on, accepts the `Host` of the proxies in front of it.
Its tools: `add`, and `whoami`, which answers the identity headers the gateway passed upstream.
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings

server = MCPServer("end-to-end", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@server.tool()
def whoami(ctx: Context) -> dict[str, str]:
    """The identity the gateway passed with this request (its X-Auth-* headers)."""
    request: Any = ctx.request_context.request
    headers = request.headers if request is not None else {}
    return {name: value for name, value in headers.items() if name.startswith("x-auth-")}


def main(port: int, hostnames: list[str]) -> None:
    allowed = [f"{hostname}:*" for hostname in ["127.0.0.1", *hostnames]]
    security = TransportSecuritySettings(allowed_hosts=allowed)
    app = server.streamable_http_app(transport_security=security)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
