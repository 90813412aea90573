"""`python -m comfy_runtime worker`: a GPU worker that pulls one job at a time and renders it in-process.

The same VideoService as predict.py: the bucket is proven, weights and locked nodes are checked and (with
HV_WARM_START) the models are loaded (service.start()) before the worker takes any work. For each job: the
prediction row goes to processing (its seed fixed, so a re-run renders the same video), the service renders it
and delivers it to object storage under a key made from the prediction id (a re-run overwrites the same one
object, and a re-run of a job already recorded as ended stops before rendering) while the run's events go to
the row (progress and log lines), then the row ends with the URL, seed and metrics (Cog's shape), and the job's
webhook fires in Cog's shape.

SIGTERM/SIGINT: the job in flight finishes and is delivered, no new one is taken, the process exits.
A worker that vanishes (SIGKILL, node lost) stops heartbeating; any other worker finds its job stalled and
re-queues it, up to HV_FARM_MAX_ATTEMPTS runs, then fails it with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from procrastinate import exceptions, jobs
from procrastinate.worker import Worker
from pydantic import ValidationError

from comfy_runtime.backends.contract import NodeStarted, RunEvent, StepProgress
from comfy_runtime.delivery.deliverer import Delivery, DeliveryFailed, ObjectStoreDelivery, delivery_from_settings
from comfy_runtime.errors import ExecutionInterrupted, HunyuanVideoError, RunTimedOut
from comfy_runtime.farm import job_log, signing
from comfy_runtime.farm import webhook as webhooks
from comfy_runtime.farm.config import FarmNotConfigured, FarmSettings
from comfy_runtime.farm.database_watch import DATABASE_ERRORS
from comfy_runtime.farm.live import LiveJob, logs_sender
from comfy_runtime.farm.metrics import WorkerMetrics
from comfy_runtime.farm.queue import TASK_NAME, make_app
from comfy_runtime.farm.schema import TERMINAL
from comfy_runtime.farm.store import JobStore, prediction_json
from comfy_runtime.graph.frame_tap import TAP_NODE_PREFIX
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.render.metrics import as_response
from comfy_runtime.service import VideoService
from comfy_runtime.settings import Settings

log = logging.getLogger(__name__)

PROGRESS_FLUSH_SECONDS = 0.5  # progress reaches the row at most this often: a step per row write is too many


class RenderJobFailed(HunyuanVideoError, RuntimeError):
    """The job ended failed; its prediction row holds the error (node and message)."""


class _SteadyWorker(Worker):
    """procrastinate stops a worker when a heartbeat fails, e.g. while PostgreSQL restarts. A worker mid-render
    must keep rendering and keep trying: a missed beat is retried every second until the database is back
    (procrastinate 3.10.0's heartbeat loop, with the failure caught)."""

    async def _update_heartbeat(self):
        delay = self.update_heartbeat_interval
        while True:
            await asyncio.sleep(delay)
            try:
                assert self.worker_id is not None
                await self.app.job_manager.update_heartbeat(self.worker_id)
                delay = self.update_heartbeat_interval
            except exceptions.ConnectorException as error:
                log.warning("heartbeat failed (%s); retrying", type(error.__cause__ or error).__name__)
                delay = min(1.0, self.update_heartbeat_interval)


@dataclass
class _Run:
    """One job's run, shared by the event loop (which hears cancels) and the render thread."""

    prediction_id: str
    attempt: int
    phase: str = "preparing"  # preparing -> rendering (the service renders and delivers)
    cancel_requested: bool = False
    last_step: str = ""
    live: LiveJob | None = None  # the preview upload and `logs` webhooks (farm/live.py), while it renders

    def where(self) -> str:
        return f"at step {self.last_step}" if self.last_step else "before its first sampling step"


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded, failed, canceled, or skipped (already ended: a re-run)
    error: str | None = None
    output: str | None = None


class _JobProgress:
    """A run's events, for its row: the log lines (from the service's line writer, through line()) and the
    progress {node, class_type, step, total} (from the typed events), written to the row at most every
    PROGRESS_FLUSH_SECONDS, best effort (a database blip costs a progress update, never the render)."""

    def __init__(self, store: JobStore, run: _Run, repeat_cancel=None):
        self.store = store
        self.run = run
        self.repeat_cancel = repeat_cancel
        self.pending: list[str] = []
        self.progress: dict[str, Any] = {}
        self.dirty = False
        self.flushed_at = 0.0

    def line(self, text: str) -> None:
        log.info("[%s] %s", self.run.prediction_id, text)
        self.pending.append(text)
        self.dirty = True

    def __call__(self, event: RunEvent) -> None:
        if self.run.cancel_requested and self.run.phase == "rendering" and self.repeat_cancel is not None:
            # A cancel that came just before ComfyUI started would be cleared by its start: repeat it on
            # every event the run still reports, so it lands at the next node or step.
            self.repeat_cancel()
        if isinstance(event, NodeStarted) and not event.node_id.startswith(TAP_NODE_PREFIX):  # our own node's id
            self.progress = {"node": event.node_id, "class_type": event.class_type}  # means nothing to a caller
            self.dirty = True
        elif isinstance(event, StepProgress):
            self.progress = {**self.progress, "step": event.step, "total": event.total}
            self.run.last_step = f"{event.step}/{event.total}"
            self.dirty = True
        if time.monotonic() - self.flushed_at >= PROGRESS_FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if not self.dirty:
            return
        lines = "".join(f"{line}\n" for line in self.pending)
        try:
            self.store.progress(self.run.prediction_id, lines, self.progress or None)
        except Exception as error:  # the row is a view of progress; the render is what matters
            log.warning("progress of %s not recorded: %s", self.run.prediction_id, error)
            return
        self.pending.clear()
        self.dirty = False
        self.flushed_at = time.monotonic()

    def take(self) -> str:
        """Lines not yet written, for the final row update."""
        lines = "".join(f"{line}\n" for line in self.pending)
        self.pending.clear()
        self.dirty = False
        return lines


class FarmWorker:
    def __init__(self, farm: FarmSettings | None = None, settings: Settings | None = None,
                 service: VideoService | None = None, delivery: Delivery | None = None):
        self.farm = farm or FarmSettings()
        self.settings = settings or Settings()
        self.service = service
        self.delivery = delivery
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
        self._draining = False
        self._worker: Worker | None = None
        self._runs = 0
        self.metrics = WorkerMetrics(self.settings.workflow)

    # -- boot ---------------------------------------------------------------------------------------
    def boot(self) -> None:
        """Everything that can fail before taking work: database settings, metrics port, bucket, weights, ComfyUI."""
        self.farm.require_database()
        self.metrics.serve(self.farm.worker_metrics_host, self.farm.worker_metrics_port)  # before minutes of loading
        if self.delivery is None:
            self.delivery = self.service.delivery if self.service is not None else delivery_from_settings(self.settings)
        if not isinstance(self.delivery, ObjectStoreDelivery):
            raise FarmNotConfigured(
                "a farm worker delivers to object storage, and HV_S3_BUCKET is not set: set HV_S3_BUCKET "
                "(and HV_S3_ENDPOINT_URL for MinIO) so results outlive the worker"
            )
        if self.service is None:
            self.service = VideoService.from_settings(self.settings, self.delivery)
            self.service.start()  # proves the bucket first, then the model; warm start as HV_WARM_START says

    def object_key(self, prediction_id: str, output_format: str) -> str:
        assert isinstance(self.delivery, ObjectStoreDelivery)
        return f"{self.delivery.store.config.prefix}farm/{prediction_id}/{prediction_id}.{output_format}"

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> int:
        job_log.install()
        try:
            asyncio.run(self.serve())
        finally:
            if self.service is not None:
                self.service.close()
        return 0

    async def connect(self) -> None:
        """The database side: the prediction rows' pool, the schema, procrastinate's app with our task."""
        self.store = await asyncio.to_thread(JobStore(self.farm.database_url).open, 60)
        await asyncio.to_thread(self.store.ensure_schema)
        self.app = make_app(self.farm.database_url)
        self.app.task(name=TASK_NAME, queue=self.farm.queue, pass_context=True)(self._render_job)
        await self.app.open_async()

    async def disconnect(self) -> None:
        await self.app.close_async()
        self.store.close()

    async def serve(self) -> None:
        await self.connect()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.drain)
        watcher = asyncio.create_task(self._watch_stalled(), name="stalled jobs")
        log.info("worker %s ready: taking jobs from queue %r", self.name, self.farm.queue)
        try:
            while not self._draining:
                self._worker = _SteadyWorker(
                    self.app, queues=[self.farm.queue], name=self.name, concurrency=1,
                    install_signal_handlers=False, shutdown_graceful_timeout=None,
                    update_heartbeat_interval=self.farm.heartbeat_seconds,
                    stalled_worker_timeout=self.farm.stalled_seconds,
                    fetch_job_polling_interval=self.farm.poll_seconds,
                    abort_job_polling_interval=self.farm.poll_seconds,
                )
                if self._draining:  # no await since the check above: a stop cannot slip in between
                    break
                try:
                    await self._worker.run()
                except Exception as error:
                    log.warning("queue connection lost (%s): reconnecting", type(error.__cause__ or error).__name__)
                    await self._wait_for_database()
                else:
                    if not self._draining:  # procrastinate stopped on its own (a failed side task): start again
                        log.warning("the queue loop stopped; starting it again")
                        await asyncio.sleep(1)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await self.disconnect()
            self._executor.shutdown(wait=True)
            self.metrics.close()
            log.info("worker %s stopped after %d job(s)", self.name, self._runs)

    def drain(self) -> None:
        """Finish the job in flight, take no new one, exit."""
        if not self._draining:
            log.info("stop requested: finishing the job in flight, taking no new one")
        self._draining = True
        if self._worker is not None:
            self._worker.stop()

    async def _wait_for_database(self) -> None:
        delay = 0.5
        while not self._draining:
            try:
                if await self.app.check_connection_async():
                    return
            except Exception as error:
                log.info("database not back yet (%s)", type(error).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)

    # -- one job ------------------------------------------------------------------------------------
    async def _render_job(self, context, prediction_id: str) -> dict[str, Any]:
        run = _Run(prediction_id, attempt=context.job.attempts + 1)
        self.metrics.started()
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._run_job_recorded, run)
        try:
            outcome = await asyncio.shield(future)
        except asyncio.CancelledError:
            # An abort (cancel) reached this job: interrupt ComfyUI, then let the thread record how it ended.
            run.cancel_requested = True
            if run.phase == "rendering" and self.service is not None:
                log.info("cancel of %s %s: interrupting ComfyUI", prediction_id, run.where())
                self.service.cancel()
            outcome = await future
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
        self._runs += 1
        self.metrics.ended(outcome.status)
        if outcome.status in ("succeeded", "skipped"):
            return {"status": outcome.status, "output": outcome.output}
        if outcome.status == "canceled":
            raise exceptions.JobAborted(f"prediction {prediction_id} canceled")
        raise RenderJobFailed(outcome.error or "failed")

    def _run_job_recorded(self, run: _Run) -> Outcome:
        try:
            return self._run_job(run)
        except Exception as error:  # the database failed under the job itself: end its row, say why
            if isinstance(error, DATABASE_ERRORS):  # an outage, not a bug: one line, no traceback
                log.warning("job %s could not be run: the database failed (%s: %s)", run.prediction_id,
                            type(error).__name__, " ".join(str(error).split())[:200])
            else:
                log.exception("job %s could not be run", run.prediction_id)
            return self._end(run, "failed", error=f"the worker could not run it ({type(error).__name__}: {error}); "
                             "submit it again, and check the worker's log and the database")

    def _run_job(self, run: _Run) -> Outcome:
        """The render thread: the service renders and delivers; every end is written to the row here."""
        assert self.service is not None and self.delivery is not None
        row = self.store.get(run.prediction_id)
        if row is None:
            log.warning("job for %s has no prediction row; nothing to do", run.prediction_id)
            return Outcome("skipped")
        if row["status"] in TERMINAL:
            log.info("%s already ended %s (a re-run): not rendering or delivering again", run.prediction_id,
                     row["status"])
            return Outcome("skipped", output=row["output"])
        try:
            request = VideoRequest(**row["input"])
        except ValidationError as error:  # written by an older gateway with other rules
            return self._end(run, "failed", error=f"input no longer valid: {error}")
        started = self.store.start(run.prediction_id, self.name, request.with_seed().seed,
                                   f"attempt {run.attempt} on worker {self.name}\n")
        if started is None:
            return Outcome("skipped")
        if webhooks.wants(started, "start"):
            self._send(started, attempts=1)
        request = request.model_copy(update={"seed": started["seed"]})  # a re-run keeps the first run's seed
        progress = _JobProgress(self.store, run, repeat_cancel=self.service.cancel)
        run.phase = "rendering"
        if run.cancel_requested:  # the cancel came before the render began: nothing to interrupt
            return self._end(run, "canceled", progress=progress, logs="canceled before rendering\n")
        key = self.object_key(run.prediction_id, request.output_format)
        logs = logs_sender(self.store, run.prediction_id, lambda row: self._send(row, attempts=1))
        run.live = LiveJob(progress, self.delivery.store, key, run.prediction_id,
                           logs if webhooks.wants(started, "logs") else None, self.farm.logs_webhook_seconds)
        try:
            delivered = self.service.predict(request, log_line=progress.line,
                                             subscribers=(progress, run.live, self.metrics.events), key=key)
        except RunTimedOut as error:
            return self._end(run, "failed", error=str(error), progress=progress)
        except ExecutionInterrupted as error:
            if run.cancel_requested:
                return self._end(run, "canceled", progress=progress, logs=f"canceled {run.where()}\n")
            return self._end(run, "failed", error=str(error), progress=progress)
        except DeliveryFailed as error:  # no client reaches this worker's disk: keeping the video there helps nobody
            if error.run_dir is not None:
                shutil.rmtree(error.run_dir, ignore_errors=True)
            return self._end(run, "failed", progress=progress, error=(
                f"{error.cause}. Nothing is kept on worker {self.name}: fix the workers' object storage (HV_S3_BUCKET, "
                f"HV_S3_ENDPOINT_URL, the credentials), then submit it again with seed={request.seed} for the same video"))
        except HunyuanVideoError as error:  # refused input, a failed node
            return self._end(run, "failed", error=str(error), progress=progress)
        except Exception as error:  # a bug: keep the traceback in the worker's log, the message on the row
            log.exception("render of %s failed", run.prediction_id)
            return self._end(run, "failed", error=f"{type(error).__name__}: {error}", progress=progress)
        # The metrics (seed, steps, cache, LoRA fit, stage timings) go on the row as a Cog response shows them.
        return self._end(run, "succeeded", output=delivered.url, timings=as_response(delivered.metrics),
                         object_key=key, progress=progress)

    def _end(self, run: _Run, status: str, *, progress: _JobProgress | None = None, logs: str = "",
             error: str | None = None, output: str | None = None, timings: dict[str, float] | None = None,
             object_key: str | None = None) -> Outcome:
        if run.live is not None:  # the preview: deleted on success, kept otherwise (farm/live.py)
            run.live.finish(status)
        if progress is not None:  # what the throttled progress writes have not sent yet goes with the end
            logs = progress.take() + logs
        if error:
            logs += f"error: {error}\n"
        ended = self.store.finish_surely(run.prediction_id, status, logs=logs, output=output, error=error,
                                         timings=timings, object_key=object_key,
                                         progress=progress.progress if progress is not None else None)
        if ended is None:  # another run of this job ended it first
            return Outcome("skipped", output=output)
        if webhooks.wants(ended, "completed"):
            self._send(ended, attempts=webhooks.COMPLETED_ATTEMPTS)
        return Outcome(status, error=error, output=output)

    def _send(self, row: dict[str, Any], attempts: int) -> None:
        webhooks.send(row["webhook"], prediction_json(row), allowed_hosts=self.farm.webhook_allowed_hosts,
                      timeout=self.farm.webhook_timeout_seconds, attempts=attempts,
                      sign=signing.signer_for(self.store, row))

    # -- jobs whose worker vanished -----------------------------------------------------------------
    async def _watch_stalled(self) -> None:
        while True:
            await asyncio.sleep(self.farm.heartbeat_seconds)
            try:
                await self.requeue_stalled()
            except Exception as error:
                log.warning("stalled-job check failed: %s", error)

    async def requeue_stalled(self) -> list[int]:
        """Re-queue the jobs of workers that stopped heartbeating; fail those out of attempts. Any worker may run
        this: two racing for one job is settled by procrastinate's status check (the loser's update fails)."""
        stalled = await self.app.job_manager.get_stalled_jobs(
            seconds_since_heartbeat=self.farm.stalled_seconds, queue=self.farm.queue, task_name=TASK_NAME
        )
        handled = []
        for job in stalled:
            prediction_id = job.task_kwargs.get("prediction_id", "?")
            runs = job.attempts + 1
            try:
                if runs >= self.farm.max_attempts:
                    await self.app.job_manager.finish_job(job, status=jobs.Status.FAILED, delete_job=False)
                    reason = (f"the worker running it stopped heartbeating (none for {self.farm.stalled_seconds:g} s) "
                              f"on each of {runs} attempts; gave up (HV_FARM_MAX_ATTEMPTS={self.farm.max_attempts}). "
                              "Check the workers' logs and memory, then submit it again")
                    ended = await asyncio.to_thread(self.store.finish, prediction_id, "failed", error=reason,
                                                    logs=f"error: {reason}\n")
                    if ended is not None and webhooks.wants(ended, "completed"):
                        await asyncio.to_thread(self._send, ended, webhooks.COMPLETED_ATTEMPTS)
                else:
                    await self.app.job_manager.retry_job(job)
                    note = (f"attempt {runs} lost: worker {job.worker_id} stopped heartbeating; re-queued "
                            f"(attempt {runs + 1} of at most {self.farm.max_attempts})\n")
                    await asyncio.to_thread(self.store.requeued, prediction_id, note)
                log.warning("job %s (%s): worker %s stalled; %s", job.id, prediction_id, job.worker_id,
                            "failed" if runs >= self.farm.max_attempts else "re-queued")
                handled.append(job.id)
            except exceptions.ConnectorException as error:  # another worker took care of it first
                log.info("stalled job %s already handled elsewhere (%s)", job.id, error)
        return handled


def run_worker() -> int:
    worker = FarmWorker()
    worker.boot()
    threading.current_thread().name = "worker"
    return worker.run()
