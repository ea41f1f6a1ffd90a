"""The bodies of error answers, as the OpenAPI document describes them and the API sends them.

`ErrorBody` is every admin-API error (`oauthproxy.api.errors` builds each answer from it, so the
document and the wire cannot differ); `OAuthErrorBody` is the RFC 6749 §5.2 error of the OAuth
machine endpoints (`/token`, `/register`, `/revoke`, `/introspect`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FieldProblem(BaseModel):
    """One refused field: its dotted path in the request, and what is wrong with it."""

    model_config = ConfigDict(frozen=True)

    field: str = Field(description="The dotted path of the field, e.g. `custom_headers.X-Key`")
    problem: str = Field(description="What is wrong with it, in plain words")


class ErrorBody(BaseModel):
    """An error of the admin API: a machine-readable reason and a sentence for people."""

    model_config = ConfigDict(frozen=True)

    error: str = Field(description="The reason, e.g. `validation_error`, `not_found`, `conflict`")
    detail: str = Field(description="What went wrong and, where there is one, the next step")
    field: str | None = Field(
        default=None, description="The request field, header or setting the error is about"
    )
    errors: list[FieldProblem] | None = Field(
        default=None, description="Every refused field, when the body had several problems"
    )


class OAuthErrorBody(BaseModel):
    """An OAuth error (RFC 6749 §5.2, RFC 7591 §3.2.2)."""

    model_config = ConfigDict(frozen=True)

    error: str = Field(description="The OAuth error code, e.g. `invalid_request`")
    error_description: str = Field(description="What went wrong")
