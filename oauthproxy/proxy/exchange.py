"""One request on its way through an instance: what the access checks read and decide, and what
forwarding needs, carried as one value from the request's head to its answer.

The client side is a `Channel` (an HTTP/1.1 connection) today. Forwarding asks it only for the
request's body events and to take the response, so an HTTP/2 stream that offers the same can
feed the same path.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from oauthproxy.logs.records import RequestEntry
from oauthproxy.proxy.codec import Head
from oauthproxy.proxy.headers import Client, Headers, Identity
from oauthproxy.proxy.http import Channel
from oauthproxy.proxy.request import RequestView
from oauthproxy.proxy.upstream import UpstreamPool


@dataclass(slots=True, eq=False)
class Exchange:
    downstream: Channel
    """The client's side: the request's body comes from it, the response goes back to it."""
    request: Head
    view: RequestView
    """The request as routing and auth see it (normalised host, path and target)."""
    client: Client
    pool: UpstreamPool
    """The instance's upstream connections."""
    received: Headers
    """The headers the backend is sent (before the rewrite): the view's, minus what the access
    check takes out (the auth cookie)."""
    identity: Identity = ()
    """Who the access check let through, as headers for the backend (empty: anonymous)."""
    entry: RequestEntry | None = None
    """The request's log entry (None: request logging is off); it learns who answered."""
    draining: trio.Event | None = None
    """Set when the gateway shuts down: a response whose head has not gone out yet says
    `Connection: close`, and the connection closes after it."""
    answer_by: trio.CancelScope | None = None
    """The connection's request-timeout scope, entered once around all its requests: forwarding
    sets its deadline while it waits for the upstream's answer, and clears it once the answer's
    head is in. (A scope entered per request costs twice as much, on every request.) The
    connection answers 504 and closes when it fires. None: forwarding opens a scope of its own
    (an HTTP/2 stream shares its connection with others)."""
    answer_within: float = 0.0
    """The request timeout `answer_by` was set for (for the 504's detail)."""

    @property
    def head_request(self) -> bool:
        """The request is HEAD: its answer has no body."""
        return self.request.method == b"HEAD"
