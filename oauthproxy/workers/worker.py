"""A data-plane worker: `python -m oauthproxy.workers.worker INDEX API_URL REPORT_FD`.

Started by the parent's pool (never by hand), with the parent's settings in its environment and
the parent's decisions on top (`pool.py`): the Redis URL, the ports as bound, its GATEWAY_ID. It
listens on the shared public ports, runs every proxy as a replica of the gateway does, reports
ready and its metrics on REPORT_FD, and on SIGTERM drains as a single gateway does.
"""

from __future__ import annotations

import gc
import sys

import trio

from oauthproxy.api.state import ListenerPorts
from oauthproxy.condition import GatewayCondition
from oauthproxy.data_plane import Plane, start_data_plane
from oauthproxy.errors import GatewayError
from oauthproxy.listeners import SharedListeners, open_shared_listeners
from oauthproxy.logs.logger import request_logging
from oauthproxy.main import configure_logging, exit_code, known_failure, settings_or_exit
from oauthproxy.serve import watch_signals
from oauthproxy.settings import Settings
from oauthproxy.storage import open_storage
from oauthproxy.storage.epoch import EpochRepository
from oauthproxy.supervisor.continuity import Continuity
from oauthproxy.workers.reports import Reporter


async def serve_worker(settings: Settings, api_url: str, reporter: Reporter) -> None:
    """Serve the public ports until SIGTERM/SIGINT (or the parent's death), then drain."""
    listeners = await open_shared_listeners(settings)
    try:
        await _serve(settings, api_url, reporter, listeners)
    finally:
        listeners.close()
        await reporter.aclose()


async def _serve(
    settings: Settings, api_url: str, reporter: Reporter, listeners: SharedListeners
) -> None:
    shutdown = trio.Event()
    redis_url = str(settings.redis_url)
    async with trio.open_nursery() as root:
        root.start_soon(watch_signals, shutdown, root.cancel_scope)
        async with (
            open_storage(redis_url, log_db=settings.request_log_redis_db) as storage,
            request_logging(settings, storage) as requests,
        ):
            condition = GatewayCondition()
            continuity = Continuity(
                EpochRepository(storage.redis),
                condition,
                settings.oauthproxy_data_dir / "redis-epoch",
                on_loss=_parent_restores_the_token,
            )
            await continuity.start()
            ports = ListenerPorts(
                http=settings.http_port,
                https=settings.https_port,
                proxy_protocol=settings.proxy_protocol_port,
            )
            async with trio.open_nursery() as services:
                plane = Plane(
                    services,
                    settings,
                    storage,
                    redis_url,
                    settings.replica_name(),
                    ports,
                    continuity,
                    api_url,
                    shutdown,
                    requests,
                    condition,
                )
                instances = await start_data_plane(plane, listeners)
                await reporter.ready()
                gc.freeze()  # as `oauthproxy run` does: what start-up built lives as long
                if requests.metrics is not None:
                    requests.metrics.instances = instances
                    services.start_soon(reporter.serve_metrics, requests.metrics, shutdown)
                await shutdown.wait()
                services.cancel_scope.deadline = (
                    trio.current_time() + settings.shutdown_grace_seconds
                )
        root.cancel_scope.cancel()


async def _parent_restores_the_token() -> None:
    """On a data loss the parent, which owns the admin token, writes it again."""


def main(argv: list[str]) -> None:
    index, api_url, report_fd = int(argv[0]), argv[1], int(argv[2])
    settings = settings_or_exit()
    configure_logging(settings, name=f"worker {index}")
    try:
        trio.run(serve_worker, settings, api_url, Reporter(report_fd))
    except (GatewayError, BaseExceptionGroup) as error:
        reason = known_failure(error)
        if reason is None:
            raise
        print(f"oauthproxy worker {index}: {reason}", file=sys.stderr)
        raise SystemExit(exit_code(error)) from None


if __name__ == "__main__":
    main(sys.argv[1:])
