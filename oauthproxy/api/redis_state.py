"""`/api/v1/redis/accept`: after a data loss, make Redis as it is now the truth again. Admin only.

When Redis comes back empty the gateway keeps serving its last known configuration and `/health`
answers 503 `data_loss` (see `supervisor/continuity.py`). The operator restores Redis (for example
`config load`), then calls this: it writes a new data epoch, and every replica that sees it
reconciles with what Redis holds then (within a second). Called when nothing was lost, it does
the same: a full reconcile everywhere, nothing else.
"""

from __future__ import annotations

from quart import Blueprint

from oauthproxy.api.auth import requires_token
from oauthproxy.api.ownership import Json, storage
from oauthproxy.storage.epoch import EpochRepository

redis_state = Blueprint("redis_state", __name__, url_prefix="/api/v1/redis")


@redis_state.post("/accept")
@requires_token(admin=True)
async def accept() -> Json:
    """Accept what Redis holds now as the truth (admin only): ends a data-loss hold on every
    replica, which then serve exactly what Redis holds."""
    epoch = await EpochRepository(storage().redis).renew()
    return {
        "epoch": epoch,
        "detail": "every replica serves what Redis holds within a second; /health tells when",
    }
