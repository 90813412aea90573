"""The procrastinate app: one task (render one prediction) on one queue in PostgreSQL.

Why procrastinate (issue 14): a job is a row, not a broker lease, so a render may last hours with no
visibility timeout; workers take one job at a time (concurrency 1) with FOR UPDATE SKIP LOCKED; aborts reach
a running job over LISTEN/NOTIFY; workers heartbeat into procrastinate_workers, from which stalled jobs are
found; and the backlog is a COUNT(*) KEDA's postgresql trigger can run.
"""

from __future__ import annotations

import asyncio
import logging

import procrastinate
from procrastinate import exceptions

log = logging.getLogger(__name__)

TASK_NAME = "hv.render"


class ReconnectingConnector(procrastinate.PsycopgConnector):
    """procrastinate's LISTEN loop reconnects when its connection dies, but gives up (and stops the worker)
    when the reconnect itself fails, as it does while PostgreSQL restarts. A worker mid-render must ride that
    out: keep trying, and lean on the polling fallback meanwhile."""

    async def listen_notify(self, on_notification, channels) -> None:
        delay = 0.5
        while True:
            try:
                await super().listen_notify(on_notification=on_notification, channels=channels)
            except exceptions.ConnectorException as error:
                log.warning("LISTEN connection lost (%s); reconnecting in %.1f s", type(error.__cause__ or error).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)


def make_app(database_url: str, pool_size: int = 4) -> procrastinate.App:
    return procrastinate.App(connector=ReconnectingConnector(conninfo=database_url, min_size=1, max_size=pool_size,
                                                             timeout=10))
