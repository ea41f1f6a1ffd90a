"""`/api/v1/cleanup/`: remove what an older or crashed gateway left behind. Admin only.

`POST /api/v1/cleanup/orphaned` finds records whose owner token is gone and keys that point at
nothing (see `oauthproxy.storage.orphans`), and removes them all in one transaction;
`?dry_run=true` only reports them. Every answer lists what was found, with the action taken
(`delete`, `hand_over`) or `keep` for what looks odd but can be meant.
"""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response, validate_querystring

from oauthproxy.api.auth import requires_token
from oauthproxy.api.ownership import Json, as_json, storage
from oauthproxy.models.cleanup import CleanupQuery, CleanupReport
from oauthproxy.storage.orphans import clean_up

cleanup = Blueprint("cleanup", __name__, url_prefix="/api/v1/cleanup")


@cleanup.post("/orphaned")
@requires_token(admin=True)
@validate_querystring(CleanupQuery)
@document_response(CleanupReport)
async def clean_up_orphans(query_args: CleanupQuery) -> Json:
    """Remove orphaned records and dangling keys (admin only); `?dry_run=true` only lists them."""
    return as_json(await clean_up(storage(), dry_run=query_args.dry_run))
