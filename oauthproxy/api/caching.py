"""The admin API's answers are kept by no cache.

They hold what only their caller may read: token secrets (`/tokens/{name}/reveal`, a token just
generated), test tokens, client secrets, the request log. A browser keeps an answer that says
nothing about caching in its HTTP cache, on disk in its profile, where it can be read back later
without credentials (`fetch(url, {cache: "only-if-cached"})`), even once the token is deleted:
Swagger UI's "Try it out" fetched `reveal` so. Every answer under `/api/` that does not say how
it may be cached (the dashboard's pages do) gets `Cache-Control: no-store`, and each gets
`X-Content-Type-Options: nosniff`.
"""

from __future__ import annotations

from quart import Quart, Response, request


def install_no_store(app: Quart) -> None:
    @app.after_request
    async def no_store(response: Response) -> Response:
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response
