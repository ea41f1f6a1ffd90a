"""Every request body is read to its end before the answer leaves.

An answer given without reading the body (a 401, 404, 405 or 415 decided from the head alone)
would leave hypercorn with a request half-received when the response is complete: it then drops
the keep-alive connection without closing it, and the client's next request on it waits forever
(seen with schemathesis: TRACE, QUERY, then PUT on one connection; the PUT never answered).
Reading the rest first keeps the connection usable; a body over MAX_CONTENT_LENGTH is not read
but the connection is closed after the answer.
"""

from __future__ import annotations

from quart import Quart, Response, request
from werkzeug.exceptions import RequestEntityTooLarge


def install_body_reading(app: Quart) -> None:
    @app.after_request
    async def read_the_rest(response: Response) -> Response:
        try:
            await request.get_data(cache=False)
        except RequestEntityTooLarge:
            response.headers["Connection"] = "close"
        return response
