"""`serve_supervisor`: the reconciler and the two loops that feed it, under one nursery.

    supervisor nursery (instances: one nursery per hostname, owned by the reconciler)
    └─ loops nursery
       ├─ serve_workflow     events:workflow → reconciler.handle / reconcile_all
       └─ serve_revocations  oauth:revocations and signing keys → the guard

Start-up order: join the consumer group (so no event written from now on is missed), load the
verifier, start the built-in hostnames, reconcile everything, then report started with the
reconciler (its `instances` table is what the public listeners hand connections to). On
`shutdown` the loops are cancelled, then every instance drains in its nursery (`Instance.drain`:
open connections are served, each closing after its response, idle ones close at once).
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.oauth.verify import load_verifier
from oauthproxy.proxy.config import PublicPorts
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from oauthproxy.supervisor.continuity import Continuity
from oauthproxy.supervisor.reconciler import Reconciler
from oauthproxy.supervisor.revocations import serve_revocations
from oauthproxy.supervisor.workflow_loop import serve_workflow


def _issuer_trust(ca_bundle: Path | None) -> ssl.SSLContext | bool:
    """How the browser login verifies the authorization server's TLS (`OAUTH_CA_BUNDLE`)."""
    return ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else True


async def serve_supervisor(
    settings: Settings,
    storage: Storage,
    replica: str,
    ports: PublicPorts,
    continuity: Continuity,
    builtin: list[ProxyTarget],
    shutdown: trio.Event,
    *,
    settled: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[Reconciler] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the supervisor until `shutdown`; then drain every instance and wait for them.
    `settled` returns once the listeners hand over no more connections (`Instance.drain`)."""
    trust = await trio.to_thread.run_sync(_issuer_trust, settings.oauth_ca_bundle)
    consumer = storage.workflow_consumer(replica)
    async with trio.open_nursery() as instances:
        reconciler = Reconciler(settings, storage, instances, consumer, ports, continuity, trust)
        await consumer.join()
        reconciler.guard.verifier = await load_verifier(storage, settings)
        for target in builtin:
            await reconciler.add_builtin(target)
        await reconciler.reconcile_all()
        async with trio.open_nursery() as loops:
            await loops.start(serve_workflow, reconciler, consumer, continuity)
            await loops.start(
                functools.partial(
                    serve_revocations, reconciler.guard, storage, settings, continuity
                )
            )
            task_status.started(reconciler)
            await shutdown.wait()
            loops.cancel_scope.cancel()
        reconciler.drain_all(settled)
