"""oauthproxy: a Trio HTTPS gateway — dynamic reverse proxy, ACME certificates, OAuth 2.1 for MCP
servers, and a control plane, with all state in Redis.

`oauthproxy.serve(settings)` runs the whole gateway; see `oauthproxy.serve` for its shape.
"""

from __future__ import annotations

__version__ = "0.1.0"

from oauthproxy.serve import serve

__all__ = ["__version__", "serve"]
