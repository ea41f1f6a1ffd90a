"""The OAuth 2.1 authorization server for MCP clients: GitHub login, PKCE codes, RS256 tokens.

Framework-free: the root-level endpoints in `oauthproxy.api.oauth_server` adapt HTTP to the
functions here. `verify.py` is the pure token check the data plane runs on every request.
"""
