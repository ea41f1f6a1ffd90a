"""The project's own error types. Third-party errors are translated into these at package edges."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class StorageUnavailable(GatewayError):
    """Redis could not be reached or answered with an error."""


class WriteContention(GatewayError):
    """A write started over again and again because other writes kept changing its records."""


class StorageTimeout(StorageUnavailable):
    """Redis did not answer within the caller's limit (a stalled or overloaded server)."""


class NotFound(GatewayError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} {name!r} not found")
        self.kind = kind
        self.name = name


class Conflict(GatewayError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class EmbeddedRedisError(GatewayError):
    """The embedded Redis server could not be started."""


class ListenerError(GatewayError):
    """A listener could not be bound (the port is taken, or not ours to take)."""


class WorkerError(GatewayError):
    """A data-plane worker process could not be started (`WORKERS`)."""
