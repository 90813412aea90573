"""Whether the gateway's PostgreSQL answers, known without asking it on every request.

A probe on a connection of its own runs every PROBE_SECONDS. While the database is down every request is answered
503 with Retry-After at once (no pool wait, no traceback), and the outage is logged once when it starts and once
when it ends. When the probe reaches the database again the store's pool is rebuilt, so the gateway is green on
the next probe instead of after the pool's own reconnect backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import psycopg
from psycopg_pool import PoolTimeout

from comfy_runtime.farm.store import DatabaseUnavailable, JobStore

log = logging.getLogger(__name__)

PROBE_SECONDS = 0.5
CONNECT_TIMEOUT_SECONDS = 2  # libpq's minimum
RETRY_AFTER_SECONDS = 2
# What a database that is not there raises; anything else is a bug and keeps its traceback.
DATABASE_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, DatabaseUnavailable)


class DatabaseWatch:
    def __init__(self, store: JobStore, database_url: str):
        self.store = store
        self.url = database_url
        self.down_since: float | None = None
        self._probe_connection: psycopg.Connection | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, error: BaseException) -> None:
        """A request's statement failed for want of the database: the outage starts now (logged once)."""
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning("the farm's database at %s does not answer (%s): answering 503 with Retry-After until it "
                        "returns", self.store.where, _first_line(error))

    def probe(self) -> None:
        """One check, run in a thread: marks the outage's start or end."""
        try:
            if self._probe_connection is None or self._probe_connection.closed:
                self._probe_connection = psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                                                         autocommit=True)
            self._probe_connection.execute("SELECT 1")
        except psycopg.Error as error:
            self._drop_probe_connection()
            self.failed(error)
            return
        if self.down_since is not None:
            outage = time.monotonic() - self.down_since
            self.store.reopen()
            self.down_since = None
            log.warning("the farm's database at %s answers again after %.1f s", self.store.where, outage)

    async def run(self) -> None:
        while True:
            await asyncio.to_thread(self.probe)
            await asyncio.sleep(PROBE_SECONDS)

    def close(self) -> None:
        self._drop_probe_connection()

    def _drop_probe_connection(self) -> None:
        if self._probe_connection is not None:
            with contextlib.suppress(Exception):
                self._probe_connection.close()
            self._probe_connection = None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__
