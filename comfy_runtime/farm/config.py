"""The render farm's settings: HV_FARM_* variables, read by the worker, the gateway and the client.

Kept apart from comfy_runtime/settings.py (the renderer's settings, which the worker reads too) so a gateway,
which renders nothing, needs none of those; `env_names()` lists both for the deploy manifests' checks.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from comfy_runtime.errors import HunyuanVideoError

FARM_ENV_PREFIX = "HV_FARM_"
_URL_FORM = "postgresql://user:password@host:5432/dbname"


class FarmNotConfigured(HunyuanVideoError, RuntimeError):
    """A farm command ran without what it needs (a database URL, object storage)."""


class FarmSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=FARM_ENV_PREFIX, extra="ignore")

    database_url: str = Field(
        "", description="PostgreSQL connection string of the job queue, e.g. postgresql://user:pass@host:5432/db.",
    )
    queue: str = Field("hv-render", description="Queue name the jobs go to and the workers take from.")
    max_attempts: int = Field(
        3, ge=1, le=20,
        description="Runs a job may get when its worker vanishes (no heartbeat) before it fails with the reason.",
    )
    heartbeat_seconds: float = Field(10.0, gt=0, description="Seconds between a worker's heartbeats.")
    stalled_seconds: float = Field(
        30.0, gt=0,
        description="A worker silent this long is taken for dead and its job is run again (> 2 heartbeats).",
    )
    poll_seconds: float = Field(
        5.0, gt=0, description="Fallback poll for new jobs and cancels; LISTEN/NOTIFY picks them up at once.",
    )
    sync_wait_seconds: float = Field(
        60.0, ge=0,
        description="Gateway: how long a POST /predictions without Prefer: respond-async waits for the result "
        "before it answers 202 with the job id.",
    )
    gateway_host: str = Field("0.0.0.0", description="Gateway: address to listen on.")
    gateway_port: int = Field(5000, ge=1, le=65535, description="Gateway: port to listen on (Cog's is 5000).")
    webhook_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Webhook hosts allowed even though they resolve to a private or loopback address (JSON list, "
        'e.g. ["hooks.internal.svc"]). Every other private target is refused.',
    )
    logs_webhook_seconds: float = Field(
        5.0, gt=0, description="A running job's `logs` webhook (progress, ETA, preview URL) goes out at most this often.",
    )
    auth: Literal["on", "off"] = Field(
        "on", description="Gateway: `off` serves without tokens (a local demo only: anyone reaching it may submit and "
        "see every job); it then warns at every start. `on`: every request needs `Authorization: Bearer <token>`.",
    )
    worker_metrics_port: int = Field(
        0, ge=0, le=65535, description="Worker: port of its Prometheus /metrics (0: none). Each worker its own.",
    )
    worker_metrics_host: str = Field("0.0.0.0", description="Worker: address its /metrics listens on.")
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=120, description="Seconds one webhook request may take in all (connect to answer).")

    def require_database(self) -> str:
        """The database URL, refused at once when it is missing or not a connection string libpq can read
        (else the pool would retry it for its whole timeout, warning each time)."""
        if not self.database_url:
            raise FarmNotConfigured(f"HV_FARM_DATABASE_URL is not set: point it at the farm's PostgreSQL ({_URL_FORM})")
        import psycopg

        try:
            psycopg.conninfo.conninfo_to_dict(self.database_url)
        except psycopg.ProgrammingError as error:
            reason = str(error).strip().replace(f'"{self.database_url}"', "the value")  # it may hold a password
            raise FarmNotConfigured(
                f"HV_FARM_DATABASE_URL is not a PostgreSQL connection string ({reason}): use {_URL_FORM}"
            ) from None
        return self.database_url


def env_names() -> dict[str, str]:
    """Field name -> environment variable name, as comfy_runtime.settings.env_names() does for the renderer."""
    return {name: f"{FARM_ENV_PREFIX}{name.upper()}" for name in FarmSettings.model_fields}
