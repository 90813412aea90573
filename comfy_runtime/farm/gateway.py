"""`python -m comfy_runtime gateway`: Cog's prediction API in front of the farm's queue.

A client moves from one Cog pod to the farm by changing a URL: POST /predictions (Prefer: respond-async ->
202 at once, with the webhook fired by the worker; otherwise it waits up to HV_FARM_SYNC_WAIT_SECONDS for the
result, then answers 202 with the prediction and its id), PUT /predictions/{id} (idempotent), GET
/predictions/{id}, POST /predictions/{id}/cancel, GET /health-check. Inputs are checked with VideoRequest's
rules before anything is queued (422 naming the field, Cog's `detail` shape). The gateway keeps no state of its
own (everything is in PostgreSQL), needs no GPU, and may run as many replicas as wanted.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from comfy_runtime.farm.client import FarmClient, InvalidInput, PredictionExists, PredictionNotFound
from comfy_runtime.farm.config import FarmSettings
from comfy_runtime.farm.schema import TERMINAL
from comfy_runtime.farm.webhook import WebhookRefused

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
SYNC_POLL_SECONDS = 0.2
CLIENT_KEY = web.AppKey("client", FarmClient)


def _detail(status: int, loc: list[str], message: str, kind: str = "value_error") -> web.Response:
    return web.json_response({"detail": [{"loc": loc, "msg": message, "type": kind}]}, status=status)


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
    try:
        prediction = await asyncio.to_thread(
            client.submit, body.get("input"), prediction_id=prediction_id, webhook=body.get("webhook") or None,
            webhook_events_filter=body.get("webhook_events_filter"),
        )
    except InvalidInput as error:
        return web.json_response({"detail": error.problems}, status=422)
    except WebhookRefused as error:
        field = "webhook_events_filter" if str(error).startswith("webhook_events_filter") else "webhook"
        return _detail(422, ["body", field], str(error))
    except PredictionExists as error:
        if not idempotent:
            return _detail(409, ["body", "id"], str(error))
        prediction = await asyncio.to_thread(client.get, prediction_id)
        return web.json_response(prediction, status=200 if prediction["status"] in TERMINAL else 202)
    if "respond-async" in request.headers.get("Prefer", ""):
        return web.json_response(prediction, status=202)
    waited = await _wait(client, prediction["id"], client.settings.sync_wait_seconds)
    if waited["status"] in TERMINAL:
        return web.json_response(waited, status=200)
    # Still queued or rendering: the caller gets the id to GET, instead of a connection held for an hour.
    return web.json_response(waited, status=202, headers={"Location": f"/predictions/{waited['id']}"})


async def _wait(client: FarmClient, prediction_id: str, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        prediction = await asyncio.to_thread(client.get, prediction_id)
        if prediction["status"] in TERMINAL or loop.time() >= deadline:
            return prediction
        await asyncio.sleep(SYNC_POLL_SECONDS)


async def post_prediction(request: web.Request) -> web.Response:
    return await _create(request, None, idempotent=False)


async def put_prediction(request: web.Request) -> web.Response:
    return await _create(request, request.match_info["prediction_id"], idempotent=True)


async def get_prediction(request: web.Request) -> web.Response:
    try:
        return web.json_response(await asyncio.to_thread(request.app[CLIENT_KEY].get, request.match_info["prediction_id"]))
    except PredictionNotFound as error:
        return web.json_response({"detail": str(error)}, status=404)


async def cancel_prediction(request: web.Request) -> web.Response:
    try:
        return web.json_response(
            await asyncio.to_thread(request.app[CLIENT_KEY].cancel, request.match_info["prediction_id"])
        )
    except PredictionNotFound as error:
        return web.json_response({"detail": str(error)}, status=404)


async def health_check(request: web.Request) -> web.Response:
    client = request.app[CLIENT_KEY]
    try:
        backlog = await asyncio.to_thread(client.backlog)
    except Exception as error:  # the database is the gateway's one dependency
        return web.json_response({"status": "UNHEALTHY", "error": f"database: {type(error).__name__}"}, status=503)
    return web.json_response({"status": "READY", "backlog": backlog})


def make_gateway(client: FarmClient) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[CLIENT_KEY] = client
    app.router.add_post("/predictions", post_prediction)
    app.router.add_put("/predictions/{prediction_id}", put_prediction)
    app.router.add_get("/predictions/{prediction_id}", get_prediction)
    app.router.add_post("/predictions/{prediction_id}/cancel", cancel_prediction)
    app.router.add_get("/health-check", health_check)
    return app


def run_gateway(settings: FarmSettings | None = None, host: str | None = None, port: int | None = None) -> int:
    settings = settings or FarmSettings()
    client = FarmClient(settings)
    client.ensure_schema()
    try:
        web.run_app(make_gateway(client), host=host or settings.gateway_host, port=port or settings.gateway_port,
                    print=lambda text: log.info(text.strip()))
    finally:
        client.close()
    return 0
