"""The farm's tables: procrastinate's job queue plus one row per prediction, in the same PostgreSQL.

procrastinate owns `procrastinate_jobs` (status todo/doing/..., attempts, worker_id) and
`procrastinate_workers` (heartbeats). `hv_farm_predictions` holds what Cog's prediction API shows: the
input as sent, status, output URL, error, logs, progress, seed, timings. `hv_farm_jobs` joins the two, so
status, attempts, worker, timings and errors are one SQL query away.
"""

from __future__ import annotations

import psycopg
from procrastinate.schema import SchemaManager

from comfy_runtime.farm.tokens import TOKENS_DDL

# Cog's prediction statuses; "starting" covers queued (Cog uses it until predict() runs).
STATUSES = ("starting", "processing", "succeeded", "failed", "canceled")
TERMINAL = ("succeeded", "failed", "canceled")

FARM_DDL = """
CREATE TABLE IF NOT EXISTS hv_farm_predictions (
    id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    job_id bigint UNIQUE REFERENCES procrastinate_jobs(id) ON DELETE SET NULL,
    input jsonb NOT NULL,
    webhook text,
    webhook_events_filter text[] NOT NULL DEFAULT ARRAY['start', 'output', 'logs', 'completed'],
    status text NOT NULL DEFAULT 'starting'
        CHECK (status IN ('starting', 'processing', 'succeeded', 'failed', 'canceled')),
    output text,
    error text,
    logs text NOT NULL DEFAULT '',
    progress jsonb,
    seed bigint,
    timings jsonb,
    object_key text,
    worker text,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    completed_at timestamptz
);
CREATE INDEX IF NOT EXISTS hv_farm_predictions_status_idx ON hv_farm_predictions (status, created_at);
-- The gateway's /metrics reads the starts since its last scrape (farm/metrics.py): by this index, not a scan.
CREATE INDEX IF NOT EXISTS hv_farm_predictions_started_idx ON hv_farm_predictions (started_at, id)
    WHERE started_at IS NOT NULL;
CREATE OR REPLACE VIEW hv_farm_jobs AS
    SELECT p.id, p.status, p.job_id, j.status AS queue_status, j.attempts, j.worker_id, p.worker,
           p.progress, p.error, p.output, p.seed, p.timings, p.created_at, p.started_at, p.completed_at,
           p.completed_at - p.started_at AS run_time
      FROM hv_farm_predictions p LEFT JOIN procrastinate_jobs j ON j.id = p.job_id;
"""

# GET /predictions (farm/listing.py): a page newest first, of one token's rows or (admins) all, read off an index
# backwards (no sort of the table), the keyset cursor a range on the same columns.
LISTING_DDL = """
CREATE INDEX IF NOT EXISTS hv_farm_predictions_created_idx ON hv_farm_predictions (created_at, id);
CREATE INDEX IF NOT EXISTS hv_farm_predictions_owner_created_idx ON hv_farm_predictions (token_name, created_at, id);
"""

# Two processes booting at once (a gateway and a worker) must not both create the schema.
_SCHEMA_LOCK = 7_420_117_001


def ensure_schema(conn: psycopg.Connection) -> bool:
    """Create procrastinate's schema (when absent) and the farm's tables. True when procrastinate's was created.

    procrastinate's own migrations are for upgrading it; a fresh database gets its current schema in one go."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        exists = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS present").fetchone()
        exists = exists["present"] if isinstance(exists, dict) else exists[0]
        if not exists:
            conn.execute(SchemaManager.get_schema())
        conn.execute(FARM_DDL)
        conn.execute(TOKENS_DDL)  # tokens and each prediction's owner (farm/tokens.py); adds the column to old rows
        conn.execute(LISTING_DDL)  # after the owner column exists
    return not exists


def backlog_query(queue: str) -> str:
    """The SQL KEDA's postgresql trigger scales the workers on: jobs queued or running on `queue`.

    One worker renders one job, so this count is the number of workers wanted (targetQueryValue 1). A job
    waiting for its retry (scheduled_at in the future) counts too: it will need a worker."""
    literal = queue.replace("'", "''")
    return ("SELECT count(*) FROM procrastinate_jobs "
            f"WHERE queue_name = '{literal}' AND status IN ('todo', 'doing')")
