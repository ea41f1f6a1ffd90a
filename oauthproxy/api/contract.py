"""The OpenAPI document as a contract that generated clients and fuzzers can trust.

quart-schema describes what each handler validates (request body, query string) and what it
documents (success bodies). This module adds what the handlers cannot say one by one, derived from
facts the document already has, so that no route has to list its errors by hand:

- who may call it: `requires_token` marks its handler (`Access`); an unmarked handler is public and
  its operation carries no security requirement;
- which errors it can answer, from its kind (`error_statuses`): the shared `ErrorBody` for each;
- a request body is required where one is validated.

Public handlers whose answers are not the admin API's JSON (OAuth's RFC errors, HTML pages,
redirects, Prometheus text) declare them with `@answers(...)`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter
from quart import Quart, Response, request
from quart_schema import OpenAPIProvider
from quart_schema.typing import Model
from werkzeug.routing.rules import Rule

from oauthproxy.models.errors import ErrorBody

T = TypeVar("T")

ACCESS_ATTRIBUTE = "_oauthproxy_access"
ANSWERS_ATTRIBUTE = "_oauthproxy_answers"
BEARER_ATTRIBUTE = "_oauthproxy_bearer"
PATH_ATTRIBUTE = "_oauthproxy_path_schemas"
REFUSALS_ATTRIBUTE = "_oauthproxy_refusals"
REF = "#/components/schemas/{model}"
WRITES = frozenset({"post", "put", "patch", "delete"})
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


class Access(enum.Enum):
    """Who may call an operation that needs a token."""

    ADMIN = "admin"
    OWNER = "owner"  # the admin or an owner token, scoped to what the owner holds


def mark_access(handler: Any, access: Access) -> None:
    setattr(handler, ACCESS_ATTRIBUTE, access)


@dataclass(frozen=True)
class Answer:
    """One documented answer of a public operation: status (or `2XX`), media type, body model."""

    status: str
    description: str
    media_type: str | None = "application/json"
    model: type[BaseModel] | None = None


def answers(*documented: Answer, bearer: bool = False) -> Callable[[T], T]:
    """Document a public operation's answers (those that are not the admin API's `ErrorBody`);
    `bearer` when the handler checks a bearer token itself."""

    def decorate(handler: T) -> T:
        setattr(handler, ANSWERS_ATTRIBUTE, documented)
        setattr(handler, BEARER_ATTRIBUTE, bearer)
        return handler

    return decorate


def also_refuses(*statuses: int) -> Callable[[T], T]:
    """Document error statuses a protected operation answers beyond those of its kind (e.g. a
    403 to a dashboard session for an operation any token may call)."""

    def decorate(handler: T) -> T:
        setattr(handler, REFUSALS_ATTRIBUTE, frozenset(statuses))
        return handler

    return decorate


def path_parameters(**schemas: dict[str, Any]) -> Callable[[T], T]:
    """Document what a path parameter looks like (the handler checks it: 422 otherwise)."""

    def decorate(handler: T) -> T:
        setattr(handler, PATH_ATTRIBUTE, schemas)
        return handler

    return decorate


ERROR_MEANINGS = {
    400: "The body is not valid UTF-8 JSON",
    401: "No bearer token, or not a valid one: unknown, suspended (`token_suspended`, with the "
    "reason), or an `X-Act-As-Token` the caller may not send",
    403: "The token may not do this (the admin token is needed, or a rule of the tenant model "
    "refuses it)",
    404: "No such record, or one the token may not see (another owner's records read as missing)",
    409: "The change conflicts with an existing record",
    413: "The body is larger than 1 MiB",
    415: "The body is not JSON (send Content-Type: application/json)",
    422: "A field, parameter or the body is not valid; `field` and `errors` name each problem",
    503: "Redis (or a component this operation needs) is not available; try again",
}


def error_statuses(
    method: str, access: Access | None, *, path_params: bool, body: bool, query: bool
) -> frozenset[int]:
    """The error statuses an operation can answer, from its auth requirement and its inputs."""
    statuses = {503}
    if access is not None:
        statuses.add(401)
    if access is Access.ADMIN:
        statuses.add(403)
    if access is not None and method in WRITES:
        # a tenant rule refuses; a record the change names is missing; one with its name exists
        statuses |= {403, 404, 409}
    if path_params:
        statuses |= {404, 422}
    if body:
        statuses |= {400, 413, 415, 422}
    if query:
        statuses.add(422)
    return frozenset(statuses)


class ContractProvider(OpenAPIProvider):
    """quart-schema's document, with security, error answers and required bodies filled in."""

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        document.pop("security", None)  # each operation says its own
        schemas = document["components"]["schemas"]
        models: list[type[BaseModel]] = [ErrorBody, *self._answer_models()]
        for model in models:
            found = model.model_json_schema(ref_template=REF)
            schemas.update(found.pop("$defs", {}))
            schemas[model.__name__] = found
        return document

    def build_querystring_parameters(
        self, model: type[Model]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        return _with_required(model, *super().build_querystring_parameters(model))

    def build_headers_parameters(
        self, model: type[Model]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        return _with_required(model, *super().build_headers_parameters(model))

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        handler = self._app.view_functions[rule.endpoint]
        access: Access | None = getattr(handler, ACCESS_ATTRIBUTE, None)
        documented: tuple[Answer, ...] = getattr(handler, ANSWERS_ATTRIBUTE, ())
        path_schemas: dict[str, Any] = getattr(handler, PATH_ATTRIBUTE, {})
        refusals: frozenset[int] = getattr(handler, REFUSALS_ATTRIBUTE, frozenset())
        bearer = access is not None or getattr(handler, BEARER_ATTRIBUTE, False)
        for operations in paths.values():
            for method, operation in list(operations.items()):
                completed = self._complete(method, operation, access, documented, refusals)
                completed["parameters"] = [
                    {**p, "schema": path_schemas.get(p["name"], p["schema"])}
                    if p["in"] == "path"
                    else p
                    for p in completed.get("parameters", [])
                ]
                operations[method] = {**completed, "security": BEARER if bearer else []}
        return paths, components

    def _complete(
        self,
        method: str,
        operation: dict[str, Any],
        access: Access | None,
        documented: tuple[Answer, ...],
        refusals: frozenset[int] = frozenset(),
    ) -> dict[str, Any]:
        operation = dict(operation)  # quart-schema shares one object between a rule's methods
        parameters = operation.get("parameters", [])
        statuses = error_statuses(
            method,
            access,
            path_params=any(p["in"] == "path" for p in parameters),
            body="requestBody" in operation,
            query=any(p["in"] == "query" for p in parameters),
        )
        if documented and access is None:  # a public handler says what it answers; Redis: 503
            statuses = frozenset({503})
        statuses |= refusals
        responses: dict[str, Any] = {str(k): v for k, v in operation["responses"].items()}
        for answer in documented:
            _merge(responses.setdefault(answer.status, {}), _answer_object(answer))
        if not any(str(status)[0] in "23" for status in responses):
            responses["2XX"] = _answer_object(Answer("2XX", "Success"))
        for status in sorted(statuses):
            responses.setdefault(str(status), _error_object(status))
        operation["responses"] = responses
        if "requestBody" in operation:
            operation["requestBody"] = {**operation["requestBody"], "required": True}
        return operation

    def _answer_models(self) -> Iterable[type[BaseModel]]:
        for handler in self._app.view_functions.values():
            for answer in getattr(handler, ANSWERS_ATTRIBUTE, ()):
                if answer.model is not None:
                    yield answer.model


def _with_required(
    model: type[Model], parameters: list[dict[str, Any]], components: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """quart-schema leaves out which query or header parameters are required: the model says."""
    required = set(TypeAdapter(model).json_schema().get("required", []))
    for parameter in parameters:
        if parameter["name"].replace("-", "_") in required:
            parameter["required"] = True
    return parameters, components


def _answer_object(answer: Answer) -> dict[str, Any]:
    found: dict[str, Any] = {"description": answer.description}
    if answer.media_type is not None:
        schema = {"$ref": REF.format(model=answer.model.__name__)} if answer.model else {}
        found["content"] = {answer.media_type: {"schema": schema}}
    return found


def _merge(into: dict[str, Any], answer: dict[str, Any]) -> None:
    """Two answers with one status (an HTML page or OAuth JSON) become one with both types."""
    into.setdefault("description", answer["description"])
    if "content" in answer:
        into["content"] = {**into.get("content", {}), **answer["content"]}


def _error_object(status: int) -> dict[str, Any]:
    return {
        "description": ERROR_MEANINGS[status],
        "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}},
    }


def install_allow_header(app: Quart) -> None:
    """An automatic OPTIONS answer lists the methods of the path it matched. werkzeug would
    also list those of every other path the URL fits (`/api/v1/tokens/info` also fits
    `/api/v1/tokens/{name}`), which the document does not say for that path."""

    @app.after_request
    async def allow_of_matched_path(response: Response) -> Response:
        matched = request.url_rule
        if request.method == "OPTIONS" and matched is not None:
            methods = {
                method
                for rule in app.url_map.iter_rules()
                if rule.rule == matched.rule
                for method in rule.methods or ()
            }
            response.headers["Allow"] = ", ".join(sorted(methods))
        return response
