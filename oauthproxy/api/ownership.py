"""What the blueprints of owned resources share: who may change a record, and partial updates.

A proxy or service belongs to the token that created it (`owner_token_hash`). Its owner and the
admin token may change or delete it; any valid token may read it.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from quart import current_app

from oauthproxy.api.auth import current_token
from oauthproxy.api.errors import ApiError, field_problems
from oauthproxy.api.state import app_state
from oauthproxy.storage import Storage

R = TypeVar("R", bound=BaseModel)

Json = dict[str, Any]


def storage() -> Storage:
    return app_state(current_app).storage


def as_json(model: BaseModel) -> Json:
    return model.model_dump(mode="json")


def ownership() -> dict[str, str]:
    """The owner fields of a record the caller creates."""
    caller = current_token()
    return {"owner_token_hash": caller.hash, "created_by": caller.name}


def caller_owns(owner_token_hash: str | None) -> bool:
    caller = current_token()
    return caller.is_admin or owner_token_hash == caller.hash


def require_owner(owner_token_hash: str | None, *, field: str, what: str) -> None:
    """Refuse (403) unless the caller owns the record or is the admin."""
    if not caller_owns(owner_token_hash):
        raise ApiError(
            403, "forbidden", f"only the owner of {what} or the admin may change it", field=field
        )


def patched(record: R, changes: dict[str, Any]) -> R:
    """`record` with `changes` applied and validated as a whole (422 naming the bad field)."""
    try:
        return type(record).model_validate({**record.model_dump(), **changes})
    except ValidationError as error:
        problems = field_problems(error)
        summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        raise ApiError(422, "validation_error", summary, field=problems[0]["field"]) from None
