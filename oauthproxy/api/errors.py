"""Every error the admin API returns is JSON: `{"error", "detail", "field"?, "errors"?}`.

Bad input is a 4xx that names the field and the problem; an unexpected failure is a 500 with no
trace (the trace goes to the log); Redis being away is a 503, and so is a write that other writes
kept overtaking (`contention`, with `Retry-After`).
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from quart import Quart, Response, jsonify, request
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

from oauthproxy.errors import (
    Conflict,
    NotFound,
    StorageTimeout,
    StorageUnavailable,
    WriteContention,
)
from oauthproxy.models.common import PATTERN_MEANINGS
from oauthproxy.models.errors import ErrorBody, FieldProblem
from oauthproxy.services.docker import EngineError, EngineUnavailable
from oauthproxy.services.owner_networks import RoutingGateway
from oauthproxy.tenancy.caller import Refused

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raise from a handler to answer with this status and JSON body."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field
        self.headers = headers or {}


def error_response(
    status: int,
    error: str,
    detail: str,
    *,
    field: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    problems = [FieldProblem(**problem) for problem in errors or ()] or None
    body = ErrorBody(error=error, detail=detail, field=field, errors=problems)
    response = jsonify(body.model_dump(exclude_none=True))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def field_problems(error: ValidationError) -> list[dict[str, str]]:
    """One entry per problem: the dotted field path and pydantic's message."""
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "body"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "string_pattern_mismatch":
            message = PATTERN_MEANINGS.get(str(item.get("ctx", {}).get("pattern")), message)
        elif item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "url_parsing" and "without a base" in message:
            given = item["input"] if isinstance(item["input"], str) else "..."
            example = f"http://{given[:80]}"
            message = f"the URL has no scheme: add http:// or https:// (e.g. {example})"
        problems.append({"field": location, "problem": message})
    return problems


NOT_JSON = (
    "the admin API takes a JSON object: send the body with Content-Type: application/json "
    "(this request's type is {kind})"
)


WHOLE_BODY_TYPES = frozenset({"model_type", "model_attributes_type", "dict_type"})
"""pydantic's error types for a body that is no object at all (None for a non-JSON body)."""


def body_not_an_object(error: ValidationError) -> bool:
    """Whether pydantic refused the body as a whole (no JSON object), not a field in it."""
    items = error.errors()
    return len(items) == 1 and not items[0]["loc"] and items[0]["type"] in WHOLE_BODY_TYPES


def _validation_failed(exc: RequestSchemaValidationError) -> Response:
    cause = exc.validation_error
    if isinstance(cause, ValidationError):
        if body_not_an_object(cause):
            if not request.is_json:
                kind = request.mimetype or "missing"
                return error_response(
                    415, "unsupported_media_type", NOT_JSON.format(kind=kind), field="body"
                )
            detail = "the body must be a JSON object ({...}) with the fields this endpoint takes"
            return error_response(422, "validation_error", detail, field="body")
        problems = field_problems(cause)
        summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        return error_response(
            422, "validation_error", summary, field=problems[0]["field"], errors=problems
        )
    return error_response(400, "invalid_body", str(cause), field="body")


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 400:
        return error_response(
            400, "invalid_json", "the request body is not valid JSON", field="body"
        )
    names = {404: "not_found", 405: "method_not_allowed", 415: "unsupported_media_type"}
    allowed = getattr(exc, "valid_methods", None)
    return error_response(
        status,
        names.get(status, "http_error"),
        exc.description or exc.name or "error",
        headers={"Allow": ", ".join(allowed)} if allowed else None,
    )


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error in the admin API", exc_info=exc)
    return error_response(500, "internal_error", "an internal error occurred; see the gateway log")


def install_error_handlers(app: Quart) -> None:
    @app.errorhandler(ApiError)
    async def api_error(exc: ApiError) -> Response:
        return error_response(
            exc.status, exc.error, exc.detail, field=exc.field, headers=exc.headers
        )

    @app.errorhandler(RequestSchemaValidationError)
    async def validation_failed(exc: RequestSchemaValidationError) -> Response:
        return _validation_failed(exc)

    @app.errorhandler(Refused)
    async def refused(exc: Refused) -> Response:
        return error_response(exc.status, exc.error, exc.detail, field=exc.field)

    @app.errorhandler(NotFound)
    async def not_found(exc: NotFound) -> Response:
        return error_response(404, "not_found", str(exc), field=exc.kind)

    @app.errorhandler(Conflict)
    async def conflict(exc: Conflict) -> Response:
        return error_response(409, "conflict", exc.message, field=exc.field)

    @app.errorhandler(WriteContention)
    async def write_contention(exc: WriteContention) -> Response:
        log.warning("write given up: %s", exc)
        detail = "the records kept changing while this write was made; try again"
        return error_response(503, "contention", detail, headers={"Retry-After": "1"})

    @app.errorhandler(StorageTimeout)
    async def storage_timeout(exc: StorageTimeout) -> Response:
        log.error("storage timed out: %s", exc)
        return error_response(
            503,
            "storage_timeout",
            "Redis did not answer within API_REDIS_TIMEOUT; a change may or may not have been "
            "made: check, then try again",
        )

    @app.errorhandler(StorageUnavailable)
    async def storage_unavailable(exc: StorageUnavailable) -> Response:
        log.error("storage unavailable: %s", exc)
        return error_response(503, "storage_unavailable", "Redis is not reachable")

    @app.errorhandler(EngineUnavailable)
    async def engine_unavailable(exc: EngineUnavailable) -> Response:
        log.warning("%s", exc)
        return error_response(503, "docker_unavailable", str(exc), field="DOCKER_HOST")

    @app.errorhandler(RoutingGateway)
    async def routing_gateway(exc: RoutingGateway) -> Response:
        log.error("%s", exc)
        return error_response(503, "gateway_misconfigured", str(exc), field="GATEWAY_CONTAINER")

    @app.errorhandler(EngineError)
    async def engine_error(exc: EngineError) -> Response:
        return error_response(422, "docker_error", f"the Docker engine refused: {exc}")

    @app.errorhandler(UnicodeDecodeError)
    async def not_utf8(exc: UnicodeDecodeError) -> Response:
        """Quart decodes a JSON body as UTF-8 before parsing it, outside any handler's reach."""
        what = "UTF-8 JSON" if request.is_json else "UTF-8"
        detail = f"the request body is not valid {what} (byte {exc.start})"
        return error_response(400, "invalid_json", detail, field="body")

    @app.errorhandler(RecursionError)
    async def nested_too_deeply(exc: RecursionError) -> Response:
        """Python's JSON parser refuses deep nesting with a RecursionError, not a ValueError,
        so Quart passes it on: anyone's 200 kB of `[` was a 500 and a stack trace."""
        if not request.is_json:
            return _unexpected(exc)
        return error_response(
            400, "invalid_json", "the request body nests JSON too deeply", field="body"
        )

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        return _http_error(exc)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        return _unexpected(exc)
