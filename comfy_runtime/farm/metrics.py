"""Prometheus metrics (prometheus_client) for the farm: the gateway's /metrics and each worker's own port.

Labels carry only names the operator chose or the code fixed: the route template (`/predictions/{prediction_id}`,
never the id), the method, the status code, the prediction status, the outcome and the worker's workflow. No
prompt, token, prediction id or URL is ever a label value, so the series stay few and nothing private leaks.

Gateway (HV_FARM_GATEWAY_PORT, /metrics, open like /health-check):
    hv_farm_gateway_requests_total{route,method,status}   requests answered, counted in this replica
    hv_farm_backlog{status}                               predictions queued (starting) and rendering (processing)
    hv_farm_queue_wait_seconds                            histogram: created -> started, of the jobs started
The last two come from PostgreSQL at each scrape, so they are farm-wide and every replica reports the same backlog
and the same wait rates (aggregate them with max, not sum); each replica's histogram counts from its own start.

Worker (HV_FARM_WORKER_METRICS_PORT, /metrics): see WorkerMetrics.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from comfy_runtime.backends.contract import NodeStarted, RunDone, RunEvent, StepProgress

log = logging.getLogger(__name__)

WAIT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
RENDER_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
LOAD_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
BACKLOG_STATUSES = ("starting", "processing")
BACKLOG_HELP = "Predictions queued (starting) or rendering (processing), farm-wide"
WAIT_HELP = "Seconds from submit to a worker starting it, of every started prediction, farm-wide"
UNMATCHED = "unmatched"  # any path no route serves: one series, whatever was asked for


class _FarmFromDatabase:
    """The farm-wide figures, refreshed from PostgreSQL at each scrape: the backlog (a gauge, read whole) and the
    queue waits of the jobs started since the last scrape, observed into this replica's histogram.

    The histogram is fed incrementally, by a keyset on (started_at, id) over an index, so a scrape reads only the
    new starts however long the table is, and a housekeeping DELETE of old rows cannot make it go down. A start
    is read once it is START_LAG_SECONDS old: started_at is its statement's now(), so a row may commit a moment
    after a later one, and the keyset must not have passed it by then."""

    START_LAG_SECONDS = 2
    BATCH = 10_000  # starts read per scrape at most; a backlog of them is caught up over the next scrapes

    def __init__(self, store, registry: CollectorRegistry):
        self.store = store
        self.backlog = Gauge("hv_farm_backlog", BACKLOG_HELP, ["status"], registry=registry)
        self.waits = Histogram("hv_farm_queue_wait_seconds", WAIT_HELP, buckets=WAIT_BUCKETS, registry=registry)
        self.after: tuple[Any, str] | None = None  # the last start observed; None: not yet read (boot)

    def refresh(self) -> None:
        with self.store.connection() as conn:
            counts = {row["status"]: row["n"] for row in conn.execute(
                "SELECT status, count(*) AS n FROM hv_farm_predictions WHERE status IN ('starting', 'processing') "
                "GROUP BY status").fetchall()}
            if self.after is None:  # a counter starts with its process: starts from boot on (less the lag)
                boot = conn.execute("SELECT now() - make_interval(secs => %s) AS at", (self.START_LAG_SECONDS,))
                self.after = (boot.fetchone()["at"], "")
            starts = conn.execute(
                "SELECT id, started_at, extract(epoch FROM started_at - created_at)::float8 AS wait "
                "FROM hv_farm_predictions WHERE started_at IS NOT NULL AND (started_at, id) > (%s, %s) "
                "AND started_at <= now() - make_interval(secs => %s) ORDER BY started_at, id LIMIT %s",
                (*self.after, self.START_LAG_SECONDS, self.BATCH)).fetchall()
        for status in BACKLOG_STATUSES:
            self.backlog.labels(status).set(counts.get(status, 0))
        for start in starts:
            self.waits.observe(max(0.0, start["wait"]))
        if starts:
            self.after = (starts[-1]["started_at"], starts[-1]["id"])


class GatewayMetrics:
    def __init__(self, store):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("hv_farm_gateway_requests", "Requests the gateway answered, by route template, "
                                "method and status code", ["route", "method", "status"], registry=self.registry)
        self.database = _FarmFromDatabase(store, self.registry)
        self.collectors = (self.requests, self.database.backlog, self.database.waits)

    @web.middleware
    async def count(self, request: web.Request, handler) -> web.StreamResponse:
        """Outermost: a 401, a 429 and a 503 count as well as a 200."""
        resource = request.match_info.route.resource if request.match_info.route is not None else None
        route = resource.canonical if resource is not None else UNMATCHED
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            self.requests.labels(route, request.method, str(status)).inc()

    async def started(self, app: web.Application) -> None:
        """The wait histogram counts from the gateway's start, not from its first scrape."""
        try:
            await asyncio.to_thread(self.database.refresh)
        except Exception as error:  # no database yet: the first scrape starts the count instead
            log.info("metrics: the first read of the database failed (%s); counting from the first scrape",
                     type(error).__name__)

    async def serve(self, request: web.Request) -> web.Response:
        await asyncio.to_thread(self.database.refresh)  # a database outage here is the gateway's 503
        body = await asyncio.to_thread(generate_latest, self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


GATEWAY_METRICS_KEY = web.AppKey("metrics", GatewayMetrics)


def install_gateway(app: web.Application, store) -> None:
    metrics = GatewayMetrics(store)
    app[GATEWAY_METRICS_KEY] = metrics
    app.middlewares.insert(0, metrics.count)
    app.router.add_get("/metrics", metrics.serve)
    app.on_startup.append(metrics.started)


class WorkerMetrics:
    """One worker's metrics, on its own port:
        hv_farm_worker_jobs_total{outcome,workflow}     jobs ended: succeeded, failed, canceled, skipped (a re-run of
                                                        an ended job)
        hv_farm_worker_render_seconds{workflow}         histogram: render time of each delivered job (ComfyUI + encode)
        hv_farm_worker_step_seconds{workflow}           histogram: seconds of each sampling step
        hv_farm_worker_model_load_seconds{workflow}     histogram: seconds in loader nodes per delivered job (0 when
                                                        the models were already loaded)
        hv_farm_worker_peak_gpu_memory_bytes            peak GPU memory torch allocated during the last job (0 on CPU)
        hv_farm_worker_busy                             1 while a job runs, 0 while idle
    Events reach `events` from the render thread; one job runs at a time, so no lock is needed."""

    def __init__(self, workflow: str):
        self.workflow = workflow
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["workflow"]
        self.jobs = Counter("hv_farm_worker_jobs", "Jobs this worker ended, by outcome", ["outcome", "workflow"],
                            registry=self.registry)
        self.render_seconds = Histogram("hv_farm_worker_render_seconds", "Render seconds of each delivered job "
                                        "(ComfyUI and encode)", labels, buckets=RENDER_BUCKETS, registry=self.registry)
        self.step_seconds = Histogram("hv_farm_worker_step_seconds", "Seconds of each sampling step", labels,
                                      buckets=STEP_BUCKETS, registry=self.registry)
        self.model_load_seconds = Histogram("hv_farm_worker_model_load_seconds", "Seconds in model loader nodes per "
                                            "delivered job (0: already loaded)", labels, buckets=LOAD_BUCKETS,
                                            registry=self.registry)
        self.peak_gpu_memory = Gauge("hv_farm_worker_peak_gpu_memory_bytes", "Peak GPU memory torch allocated "
                                     "during the last job (0 on CPU)", registry=self.registry)
        self.busy = Gauge("hv_farm_worker_busy", "1 while this worker runs a job, 0 while idle", registry=self.registry)
        self.collectors = (self.jobs, self.render_seconds, self.step_seconds, self.model_load_seconds,
                           self.peak_gpu_memory, self.busy)
        self._last_step: float | None = None
        self._server: Any = None

    def serve(self, host: str, port: int) -> None:
        if not port:
            return
        from prometheus_client import start_http_server

        try:
            self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as error:
            from comfy_runtime.farm.config import FarmNotConfigured

            raise FarmNotConfigured(f"HV_FARM_WORKER_METRICS_PORT={port}: cannot listen on {host}:{port} "
                                    f"({error.strerror}): give each worker a free port, or 0 for none") from None
        log.info("metrics on http://%s:%d/metrics", host, port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def started(self) -> None:
        self.busy.set(1)
        self._last_step = None
        cuda = _cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()

    def ended(self, outcome: str) -> None:
        self.jobs.labels(outcome, self.workflow).inc()
        cuda = _cuda()
        self.peak_gpu_memory.set(cuda.max_memory_allocated() if cuda is not None else 0)
        self.busy.set(0)

    def events(self, event: RunEvent) -> None:
        """A subscriber of the run's events (service.predict's subscribers)."""
        if isinstance(event, NodeStarted):  # a node's first step is timed from the node's start
            self._last_step = event.at
        elif isinstance(event, StepProgress):
            if self._last_step is not None:
                self.step_seconds.labels(self.workflow).observe(max(0.0, event.at - self._last_step))
            self._last_step = event.at
        elif isinstance(event, RunDone):
            seconds = event.timings.get("total_seconds", event.timings.get("comfyui_seconds"))
            if seconds is not None:
                self.render_seconds.labels(self.workflow).observe(float(seconds))
            self.model_load_seconds.labels(self.workflow).observe(float(event.metrics.get("timings.load", 0.0)))


def _cuda():
    """torch.cuda when a GPU is in use, else None (a CPU worker reports 0 peak memory)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda if torch.cuda.is_available() else None


def exported(collectors) -> set[str]:
    """The sample names these collectors export, from their descriptions: a labelled metric with no series yet
    shows nothing in a scrape."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {family.name + suffix for collector in collectors for family in collector.describe()
            for suffix in suffixes[family.type]}
