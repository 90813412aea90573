"""The prediction rows (hv_farm_predictions): what the client, the gateway and the workers read and write.

Synchronous psycopg with a pool whose connections are checked before use, so a restarted PostgreSQL costs
the failed statement, not the process: the worker's render thread and the gateway (through a thread) share
this one implementation.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from comfy_runtime.errors import HunyuanVideoError
from comfy_runtime.farm.live import lifted
from comfy_runtime.farm.schema import TERMINAL, ensure_schema
from comfy_runtime.farm.webhook import sent_events
from comfy_runtime.redact import url_without_credentials

log = logging.getLogger(__name__)

COLUMNS = ("id, job_id, input, webhook, webhook_events_filter, status, output, error, logs, progress, seed, "
           "timings, object_key, worker, created_at, started_at, completed_at, token_name")


def _prefixed(alias: str) -> str:
    return ", ".join(alias + name.strip() for name in COLUMNS.split(","))


# A prediction row as prediction_json reads it: its own columns and its queue job's state (GET one, list a page).
PREDICTION_SELECT = (f"SELECT {_prefixed('p.')}, j.attempts, j.status AS queue_status, j.abort_requested "
                     "FROM hv_farm_predictions p LEFT JOIN procrastinate_jobs j ON j.id = p.job_id")


class DatabaseUnavailable(HunyuanVideoError, RuntimeError):
    """The farm's PostgreSQL did not answer; the message names where it was looked for (no password)."""


class JobStore:
    def __init__(self, database_url: str, max_size: int = 4, wait_seconds: float = 10):
        self.where = url_without_credentials(database_url)
        self._url, self._max_size, self._wait_seconds = database_url, max_size, wait_seconds
        self.pool = self._new_pool()

    def _new_pool(self) -> ConnectionPool:
        return ConnectionPool(
            self._url, min_size=1, max_size=self._max_size, open=False, timeout=self._wait_seconds,
            check=ConnectionPool.check_connection, kwargs={"autocommit": True, "row_factory": dict_row},
        )

    def reopen(self) -> None:
        """A fresh pool after an outage: the old one would wait out its reconnect backoff (seconds to minutes)."""
        fresh = self._new_pool()
        fresh.open(wait=False)
        stale, self.pool = self.pool, fresh
        stale.close(timeout=0)

    def open(self, wait_seconds: float = 30) -> JobStore:
        try:
            self.pool.open(wait=True, timeout=wait_seconds)
        except PoolTimeout:
            self.pool.close()
            raise DatabaseUnavailable(
                f"the farm's database at {self.where} did not answer within {wait_seconds:g} s: check that PostgreSQL "
                "is up and HV_FARM_DATABASE_URL (host, port, user, password, database) is right"
            ) from None
        return self

    def close(self) -> None:
        self.pool.close()

    def ensure_schema(self) -> bool:
        with self.pool.connection() as conn:
            return ensure_schema(conn)

    def connection(self):
        return self.pool.connection()

    def get(self, prediction_id: str) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                f"{PREDICTION_SELECT} WHERE p.id = %s", (prediction_id,),
            ).fetchone()
        return row

    def insert(self, conn: psycopg.Connection, prediction_id: str, inputs: dict[str, Any], webhook: str | None,
               events: Iterable[str], token_name: str | None = None) -> None:
        conn.execute(
            "INSERT INTO hv_farm_predictions (id, input, webhook, webhook_events_filter, token_name) "
            "VALUES (%s, %s, %s, %s, %s)", (prediction_id, Jsonb(inputs), webhook, list(events), token_name),
        )

    def attach_job(self, conn: psycopg.Connection, prediction_id: str, job_id: int) -> None:
        conn.execute("UPDATE hv_farm_predictions SET job_id = %s WHERE id = %s", (job_id, prediction_id))

    def start(self, prediction_id: str, worker: str, seed: int, note: str) -> dict[str, Any] | None:
        """Mark the row processing (unless it already ended) and fix its seed, so a re-run renders the same video."""
        with self.pool.connection() as conn:
            return conn.execute(
                f"UPDATE hv_farm_predictions SET status = 'processing', worker = %s, seed = COALESCE(seed, %s), "
                "started_at = COALESCE(started_at, now()), logs = logs || %s "
                f"WHERE id = %s AND status NOT IN {TERMINAL!r} RETURNING {COLUMNS}",
                (worker, seed, note, prediction_id),
            ).fetchone()

    def progress(self, prediction_id: str, lines: str, progress: dict[str, Any] | None) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE hv_farm_predictions SET logs = logs || %s, progress = COALESCE(%s, progress) WHERE id = %s",
                (lines, Jsonb(progress) if progress else None, prediction_id),
            )

    def finish(self, prediction_id: str, status: str, *, logs: str = "", output: str | None = None,
               error: str | None = None, timings: dict[str, float] | None = None,
               object_key: str | None = None, progress: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """End the row once: the first finisher wins (a re-run of a delivered job finds it ended and stops).
        Returns the ended row, or None when it had already ended."""
        assert status in TERMINAL, status
        with self.pool.connection() as conn:
            return conn.execute(
                "UPDATE hv_farm_predictions SET status = %s, output = %s, error = %s, timings = %s, object_key = %s, "
                "logs = logs || %s, progress = COALESCE(%s, progress), completed_at = now() "
                f"WHERE id = %s AND status NOT IN {TERMINAL!r} RETURNING {COLUMNS}",
                (status, output, error, Jsonb(timings) if timings else None, object_key, logs,
                 Jsonb(progress) if progress else None, prediction_id),
            ).fetchone()

    def finish_surely(self, prediction_id: str, status: str, give_up_after: float = 600, **fields) -> dict | None:
        """finish(), retried through a database outage: a rendered and delivered video must not be forgotten."""
        deadline = time.monotonic() + give_up_after
        delay = 0.5
        while True:
            try:
                return self.finish(prediction_id, status, **fields)
            except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as error:
                if time.monotonic() > deadline:
                    raise
                log.warning("recording %s of %s failed (%s); retrying in %.1f s", status, prediction_id, error, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10)

    def requeued(self, prediction_id: str, note: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                f"UPDATE hv_farm_predictions SET status = 'starting', logs = logs || %s "
                f"WHERE id = %s AND status NOT IN {TERMINAL!r}",
                (note, prediction_id),
            )

    def count(self, where: str = "TRUE", params: tuple = ()) -> int:
        with self.pool.connection() as conn:
            return conn.execute(f"SELECT count(*) AS n FROM hv_farm_predictions WHERE {where}", params).fetchone()["n"]


def iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else None


def _attempts(row: dict[str, Any]) -> int | None:
    """Runs so far, this one included: procrastinate counts an attempt only once it has ended."""
    if row.get("attempts") is None:
        return None
    return row["attempts"] + (1 if row.get("queue_status") == "doing" else 0)


def prediction_json(row: dict[str, Any], base_url: str | None = None) -> dict[str, Any]:
    """A row as Cog's prediction object (GET /predictions/{id}, webhooks), plus a `farm` block of queue facts."""
    metrics: dict[str, Any] = {}
    if row.get("started_at") and row.get("completed_at"):
        metrics["predict_time"] = (row["completed_at"] - row["started_at"]).total_seconds()
    if row.get("timings"):
        metrics.update(row["timings"])
    progress, preview, eta = lifted(row)
    body: dict[str, Any] = {
        "id": row["id"],
        "input": row["input"],
        "output": row["output"],
        "error": row["error"],
        "logs": row["logs"],
        "status": row["status"],
        "created_at": iso(row["created_at"]),
        "started_at": iso(row["started_at"]),
        "completed_at": iso(row["completed_at"]),
        "metrics": metrics,
        "webhook": row["webhook"],
        "webhook_events_filter": sent_events(row["webhook_events_filter"]),
        "farm": {
            "job_id": row["job_id"], "attempts": _attempts(row), "queue_status": row.get("queue_status"),
            "cancel_requested": bool(row.get("abort_requested")) and row["status"] not in TERMINAL,
            "worker": row["worker"], "progress": progress, "seed": row["seed"], "object_key": row["object_key"],
            "preview": preview, "eta_seconds": eta,
        },
    }
    if base_url:
        body["urls"] = {"get": f"{base_url}/predictions/{row['id']}", "cancel": f"{base_url}/predictions/{row['id']}/cancel"}
    return body
