"""Submit, inspect, cancel and wait for farm jobs from Python: the API the CLI and the gateway are built on.

The request body is the one a Cog server takes (`input`, optional `id`, `webhook`, `webhook_events_filter`);
inputs are checked with VideoRequest's rules before anything is queued, and the prediction row and its
queue job are written in one transaction, so a job is never queued without its row or the other way round.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import psycopg

from comfy_runtime.errors import HunyuanVideoError, InputRejected
from comfy_runtime.farm import signing
from comfy_runtime.farm import webhook as webhooks
from comfy_runtime.farm.config import FarmSettings
from comfy_runtime.farm.queue import TASK_NAME, make_app
from comfy_runtime.farm.schema import TERMINAL
from comfy_runtime.farm.store import JobStore, prediction_json
from comfy_runtime.farm.tokens import OPERATOR, Principal, check_quota
from comfy_runtime.job.request import RequestRejected, VideoRequest, parse_request

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class InvalidInput(InputRejected):
    """The request breaks an input rule; `problems` lists each field (Cog's 422 `detail` shape)."""

    def __init__(self, problems: list[dict[str, Any]]):
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, p['loc'][1:]))}: {p['msg']}" for p in problems))


class PredictionExists(HunyuanVideoError, ValueError):
    """A prediction with this id was already submitted; GET it, or submit without an id for a new one."""


class PredictionNotFound(HunyuanVideoError, LookupError):
    """No prediction has this id (a typo, or it was deleted)."""


def validate_inputs(inputs: Any) -> VideoRequest:
    if not isinstance(inputs, dict):
        raise InvalidInput([{"loc": ["body", "input"], "msg": "input must be a JSON object", "type": "type_error"}])
    try:
        return parse_request(inputs)
    except RequestRejected as rejected:  # our one line per input, in Cog's 422 `detail` shape
        raise InvalidInput([
            {"loc": ["body", "input", *([problem.name] if problem.name else [])], "msg": problem.message,
             "type": problem.kind}
            for problem in rejected.problems
        ]) from None


class FarmClient:
    def __init__(self, settings: FarmSettings | None = None, pool_wait_seconds: float = 10):
        self.settings = settings or FarmSettings()
        self.store = JobStore(self.settings.require_database(), wait_seconds=pool_wait_seconds).open()
        self.app = make_app(self.settings.database_url)  # used with our own connections only: never opened

    def __enter__(self) -> FarmClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    def ensure_schema(self) -> None:
        self.store.ensure_schema()

    def submit(self, inputs: dict[str, Any], *, prediction_id: str | None = None, webhook: str | None = None,
               webhook_events_filter: list[str] | None = None, owner: Principal = OPERATOR) -> dict[str, Any]:
        """Queue one prediction, owned by `owner` (a token; OPERATOR: no owner, seen by admins only)."""
        validate_inputs(inputs)
        if prediction_id is not None and not ID_PATTERN.match(prediction_id):
            raise InvalidInput([{"loc": ["body", "id"], "msg": "id must be 1-64 letters, digits, '_' or '-'",
                                 "type": "value_error"}])
        if webhook is not None and not isinstance(webhook, str):
            raise webhooks.WebhookRefused("webhook: must be a URL string")
        if webhook_events_filter is not None and not isinstance(webhook_events_filter, list):
            raise webhooks.WebhookRefused(f"webhook_events_filter: must be a list, e.g. {list(webhooks.EVENTS)}")
        events = webhooks.check_events(webhook_events_filter)
        if webhook:
            webhooks.check_webhook_url(webhook, self.settings.webhook_allowed_hosts)
        prediction_id = prediction_id or uuid.uuid4().hex
        exists = PredictionExists(f"prediction {prediction_id} exists already: GET /predictions/{prediction_id}")
        try:
            with self.store.connection() as conn, conn.transaction():
                if conn.execute("SELECT 1 FROM hv_farm_predictions WHERE id = %s", (prediction_id,)).fetchone():
                    raise exists  # (whoever's it is: the message is the same, and names nothing of it)
                check_quota(conn, owner)  # locks the token's row: its concurrent submits count one at a time
                self.store.insert(conn, prediction_id, inputs, webhook, events, token_name=owner.name)
                job_id = self.app.configure_task(TASK_NAME, queue=self.settings.queue, connection=conn).defer(
                    prediction_id=prediction_id
                )
                self.store.attach_job(conn, prediction_id, job_id)
        except psycopg.errors.UniqueViolation:  # the same id submitted twice at once: the other one won
            raise exists from None
        return self.get(prediction_id, owner)

    def _row(self, prediction_id: str, viewer: Principal) -> dict[str, Any]:
        """The row, when `viewer` may see it: another token's prediction is not found, exactly as a missing one."""
        row = self.store.get(prediction_id)
        if row is None or not (viewer.sees_all or row.get("token_name") == viewer.name):
            raise PredictionNotFound(f"no prediction {prediction_id!r}: check the id `jobs submit` printed")
        return row

    def get(self, prediction_id: str, viewer: Principal = OPERATOR) -> dict[str, Any]:
        return prediction_json(self._row(prediction_id, viewer))

    def cancel(self, prediction_id: str, viewer: Principal = OPERATOR) -> dict[str, Any]:
        """A queued job is canceled here and never starts; a running one is asked to abort (its worker
        interrupts ComfyUI and ends it canceled). An ended one is left as it is."""
        row = self._row(prediction_id, viewer)
        if row["status"] in TERMINAL or row["job_id"] is None:
            return prediction_json(row)
        with self.store.connection() as conn, conn.transaction():
            self.app.job_manager.cancel_job_by_id(row["job_id"], abort=True, connection=conn)
            queue_status = conn.execute("SELECT status FROM procrastinate_jobs WHERE id = %s",
                                        (row["job_id"],)).fetchone()
        if queue_status and queue_status["status"] == "cancelled":  # it was queued: no worker will report it
            ended = self.store.finish(prediction_id, "canceled", logs="canceled before it started\n")
            if ended is not None and webhooks.wants(ended, "completed"):
                webhooks.send(ended["webhook"], prediction_json(ended), allowed_hosts=self.settings.webhook_allowed_hosts,
                              timeout=self.settings.webhook_timeout_seconds, attempts=webhooks.COMPLETED_ATTEMPTS,
                              sign=signing.signer_for(self.store, ended))
        return self.get(prediction_id, viewer)

    def wait(self, prediction_id: str, timeout: float | None = None, poll: float = 0.2) -> dict[str, Any]:
        """The prediction once it has ended, or as it is when `timeout` seconds have passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            prediction = self.get(prediction_id)
            if prediction["status"] in TERMINAL or (deadline is not None and time.monotonic() >= deadline):
                return prediction
            time.sleep(poll)

    def backlog(self) -> int:
        from comfy_runtime.farm.schema import backlog_query

        with self.store.connection() as conn:
            return conn.execute(backlog_query(self.settings.queue)).fetchone()["count"]
