"""`python -m comfy_runtime gateway`: Cog's prediction API in front of the farm's queue.

A client moves from one Cog pod to the farm by changing a URL: POST /predictions (Prefer: respond-async ->
202 at once, with the webhook fired by the worker; otherwise it waits up to HV_FARM_SYNC_WAIT_SECONDS for the
result, then answers 202 with the prediction and its id), PUT /predictions/{id} (idempotent), GET
/predictions/{id}, POST /predictions/{id}/cancel, GET /health-check. Inputs are checked with VideoRequest's
rules before anything is queued (422 naming the field, Cog's `detail` shape). The gateway keeps no state of its
own (everything is in PostgreSQL), needs no GPU, and may run as many replicas as wanted. Every route but
/health-check and /metrics needs `Authorization: Bearer <token>` (farm/auth.py); each token sees its own
predictions; /metrics is farm/metrics.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import web

from comfy_runtime.farm import auth, metrics, page
from comfy_runtime.farm.client import FarmClient, InvalidInput, PredictionExists, PredictionNotFound
from comfy_runtime.farm.config import FarmSettings
from comfy_runtime.farm.database_watch import DATABASE_ERRORS, RETRY_AFTER_SECONDS, DatabaseWatch
from comfy_runtime.farm.schema import TERMINAL
from comfy_runtime.farm.tokens import OverLimit, Unauthorized
from comfy_runtime.farm.webhook import WebhookRefused

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
OVER_LIMIT_RETRY_AFTER_SECONDS = 15  # a token at its --max-active: about a short render's time
SYNC_POLL_SECONDS = 0.2
MAX_ECHO_CHARS = 300  # of any one message or field name a 4xx sends back: a hostile body is not mirrored
# A statement the pool cannot serve within this long fails as 503 (the readiness probe gives up after 4 s).
POOL_WAIT_SECONDS = 3
DOWN_CHECK_SECONDS = 0.1  # how often a request in flight looks whether the probe has found the database gone
CLIENT_KEY = web.AppKey("client", FarmClient)
WATCH_KEY = web.AppKey("database_watch", DatabaseWatch)


def _detail(status: int, loc: list[str], message: str, kind: str = "value_error") -> web.Response:
    return _problems(status, [{"loc": loc, "msg": message, "type": kind}])


def _problems(status: int, problems: list[dict[str, Any]]) -> web.Response:
    """Cog's `detail` shape, each text one line and capped (a field name or message may carry the caller's value)."""
    def capped(text: Any) -> str:
        line = " ".join(str(text).split())
        return line if len(line) <= MAX_ECHO_CHARS else line[:MAX_ECHO_CHARS] + "..."

    detail = [{"loc": [capped(part) for part in problem.get("loc", [])][:8], "msg": capped(problem.get("msg", "")),
               "type": capped(problem.get("type", "value_error"))} for problem in problems[:20]]
    return web.json_response({"detail": detail}, status=status)


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _detail(422, ["body"], "the body is not JSON: send {\"input\": {...}}", "json_invalid")
    if not isinstance(body, dict):
        return _detail(422, ["body"], "the body must be a JSON object: {\"input\": {...}}", "type_error")
    return body


async def _create(request: web.Request, prediction_id: str | None, idempotent: bool) -> web.Response:
    client = request.app[CLIENT_KEY]
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    if prediction_id is None and body.get("id") is not None:
        prediction_id = str(body["id"])
    who = auth.principal(request)
    try:
        prediction = await asyncio.to_thread(
            client.submit, body.get("input"), prediction_id=prediction_id, webhook=body.get("webhook") or None,
            webhook_events_filter=body.get("webhook_events_filter"), owner=who,
        )
    except OverLimit as error:
        return web.json_response({"detail": str(error)}, status=429,
                                 headers={"Retry-After": str(OVER_LIMIT_RETRY_AFTER_SECONDS)})
    except Unauthorized as error:  # revoked between the lookup and the submit
        return auth.unauthorized(str(error))
    except InvalidInput as error:
        return _problems(422, error.problems)
    except WebhookRefused as error:
        field = "webhook_events_filter" if str(error).startswith("webhook_events_filter") else "webhook"
        return _detail(422, ["body", field], str(error))
    except PredictionExists as error:
        if not idempotent:
            return _detail(409, ["body", "id"], str(error))
        try:
            prediction = await asyncio.to_thread(client.get, prediction_id, who)
        except PredictionNotFound:  # another token's id: taken, and nothing of it is shown
            return _detail(409, ["body", "id"], f"prediction id {prediction_id} is taken: use a new id")
        conflict = _conflict(prediction, body)
        if conflict:
            return _detail(409, ["body", "input"], f"prediction {prediction_id} exists with a different input ({conflict}): "
                           "PUT the same input to get it back, or use a new id for a new prediction")
        return web.json_response(prediction, status=200 if prediction["status"] in TERMINAL else 202)
    if "respond-async" in request.headers.get("Prefer", ""):
        return web.json_response(prediction, status=202)
    waited = await _wait(client, prediction["id"], client.settings.sync_wait_seconds, who)
    if waited["status"] in TERMINAL:
        return web.json_response(waited, status=200)
    # Still queued or rendering: the caller gets the id to GET, instead of a connection held for an hour.
    return web.json_response(waited, status=202, headers={"Location": f"/predictions/{waited['id']}"})


def _conflict(existing: dict[str, Any], body: dict[str, Any]) -> str:
    """Which fields of a repeated PUT differ from the stored prediction's: an idempotency key names one request."""
    given, stored = body.get("input") or {}, existing.get("input") or {}
    if not isinstance(given, dict):
        return "input"
    fields = sorted(name for name in set(given) | set(stored) if given.get(name) != stored.get(name))
    shown = ", ".join(str(name)[:40] for name in fields[:5]) + (f" and {len(fields) - 5} more" if len(fields) > 5 else "")
    return f"differs in {shown}" if fields else ""


async def _wait(client: FarmClient, prediction_id: str, seconds: float, who: auth.Principal) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        prediction = await asyncio.to_thread(client.get, prediction_id, who)
        if prediction["status"] in TERMINAL or loop.time() >= deadline:
            return prediction
        await asyncio.sleep(SYNC_POLL_SECONDS)


async def post_prediction(request: web.Request) -> web.Response:
    return await _create(request, None, idempotent=False)


async def put_prediction(request: web.Request) -> web.Response:
    return await _create(request, request.match_info["prediction_id"], idempotent=True)


async def get_prediction(request: web.Request) -> web.Response:
    try:
        return web.json_response(await asyncio.to_thread(request.app[CLIENT_KEY].get, request.match_info["prediction_id"],
                                                         auth.principal(request)))
    except PredictionNotFound as error:
        return web.json_response({"detail": str(error)}, status=404)


async def cancel_prediction(request: web.Request) -> web.Response:
    try:
        return web.json_response(
            await asyncio.to_thread(request.app[CLIENT_KEY].cancel, request.match_info["prediction_id"],
                                    auth.principal(request))
        )
    except PredictionNotFound as error:
        return web.json_response({"detail": str(error)}, status=404)


async def health_check(request: web.Request) -> web.Response:
    backlog = await asyncio.to_thread(request.app[CLIENT_KEY].backlog)
    return web.json_response({"status": "READY", "backlog": backlog})


@web.middleware
async def _without_database(request: web.Request, handler) -> web.StreamResponse:
    """The database is the gateway's one dependency: without it every route answers 503 at once."""
    watch = request.app[WATCH_KEY]
    if not watch.down:
        answer = asyncio.ensure_future(handler(request))
        # A statement already waiting on the pool when the database went is not waited out: the probe's verdict
        # ends it (its thread finishes on its own; a POST cut off so is retried by the caller, as 503 asks).
        while not watch.down:
            done, _ = await asyncio.wait({answer}, timeout=DOWN_CHECK_SECONDS)
            if done:
                try:
                    return answer.result()
                except DATABASE_ERRORS as error:
                    watch.failed(error)
                    break
        answer.cancel()
    message = (f"the farm's database does not answer: retry in {RETRY_AFTER_SECONDS} s (the gateway's log names "
               "the database; check that PostgreSQL is up)")
    body = ({"status": "UNHEALTHY", "error": message} if request.path == "/health-check" else {"detail": message})
    return web.json_response(body, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


async def _watching(app: web.Application):
    task = asyncio.create_task(app[WATCH_KEY].run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    app[WATCH_KEY].close()


def make_gateway(client: FarmClient) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_without_database])
    app[CLIENT_KEY] = client
    app[WATCH_KEY] = DatabaseWatch(client.store, client.settings.database_url)
    app.cleanup_ctx.append(_watching)
    auth.install(app, client.store, enabled=client.settings.auth != "off")  # inside the database middleware
    metrics.install_gateway(app, client.store)  # /metrics, and the request counter outermost
    app.router.add_post("/predictions", post_prediction)
    app.router.add_put("/predictions/{prediction_id}", put_prediction)
    app.router.add_get("/predictions/{prediction_id}", get_prediction)
    app.router.add_post("/predictions/{prediction_id}/cancel", cancel_prediction)
    app.router.add_get("/health-check", health_check)
    page.add_routes(app, client)  # the jobs page (GET /ui), GET /inputs, GET /predictions
    return app


def run_gateway(settings: FarmSettings | None = None, host: str | None = None, port: int | None = None) -> int:
    settings = settings or FarmSettings()
    client = FarmClient(settings, pool_wait_seconds=POOL_WAIT_SECONDS)
    client.ensure_schema()
    try:
        web.run_app(make_gateway(client), host=host or settings.gateway_host, port=port or settings.gateway_port,
                    print=lambda text: log.info(text.strip()))
    finally:
        client.close()
    return 0
