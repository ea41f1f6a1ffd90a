"""oauthproxy: a Trio HTTPS gateway — dynamic reverse proxy, ACME certificates, OAuth 2.1 for MCP
servers, and a control plane, with all state in Redis."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "serve"]


def __getattr__(name: str) -> object:
    if name == "serve":
        from oauthproxy.serve import serve

        return serve
    raise AttributeError(name)
