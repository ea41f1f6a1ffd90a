"""The OAuth error responses of RFC 6749 section 5.2 (and RFC 7591, 7009, 7662, 8707)."""

from __future__ import annotations

from typing import Any


class OAuthError(Exception):
    """An error the endpoint answers as `{"error", "error_description"}` JSON."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


def invalid_client(description: str, *, basic: bool = False) -> OAuthError:
    """401 invalid_client; with a Basic challenge when the client tried Basic authentication."""
    headers = {"WWW-Authenticate": 'Basic realm="oauth"'} if basic else {}
    return OAuthError("invalid_client", description, status=401, headers=headers)


class PageError(Exception):
    """An authorization-flow failure shown to the user as a page, never redirected: an unknown
    client, a redirect URI that does not match, an expired login, a refused GitHub user."""

    def __init__(self, title: str, detail: str, *, status: int = 400) -> None:
        super().__init__(detail)
        self.title = title
        self.detail = detail
        self.status = status


class RedirectError(Exception):
    """An authorization-request error sent back to the client's (verified) redirect URI.

    `automatic` is False for an error found before the user did anything, for a client the
    gateway does not trust (one anyone could register): the user gets a page naming the
    error, with a link to the client, rather than a redirect (RFC 9700 section 4.11.2: with
    open registration, an automatic error redirect makes the gateway an open redirector)."""

    def __init__(
        self,
        error: str,
        description: str,
        redirect_uri: str,
        state: str | None,
        *,
        automatic: bool = True,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.redirect_uri = redirect_uri
        self.state = state
        self.automatic = automatic
