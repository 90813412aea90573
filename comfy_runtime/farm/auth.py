"""The gateway's access control: `Authorization: Bearer <token>` on every route but the open ones.

Each request's token is looked up in PostgreSQL (farm/tokens.py), nothing cached, so a revoked token is refused
on its next request. The Principal it resolves to is on the request (`principal(request)`) for the handlers,
which pass it to the FarmClient: a prediction of another token is then not found (404), exactly as a missing one.

Open routes: /health-check (the probes) and /metrics (Prometheus; counts only, no prompt, token or URL), plus any
handler marked with `public` (the jobs page's static files). `HV_FARM_AUTH=off` serves every route without a
token, as the operator (every job visible): for a demo on one machine; the gateway warns at every start.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from comfy_runtime.farm.tokens import OPERATOR, Principal, Unauthorized, authenticate

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health-check", "/metrics"})
PRINCIPAL_KEY = "hv_farm_principal"
AUTH_OFF_WARNING = ("HV_FARM_AUTH=off: the gateway serves without tokens, so anyone who reaches it may submit "
                    "jobs and read or cancel every job; for a local demo only (unset it to require "
                    "`Authorization: Bearer <token>`)")


def public(handler):
    """Mark a route handler as served without a token (a static page that then signs in with one)."""
    handler.hv_farm_public = True
    return handler


def principal(request: web.Request) -> Principal:
    """Who made this request. A handler on a guarded route always has one; there is no fallback to the operator
    (a route the middleware did not see fails loudly instead of serving everything)."""
    return request[PRINCIPAL_KEY]


def unauthorized(message: str) -> web.Response:
    return web.json_response({"detail": message}, status=401, headers={"WWW-Authenticate": "Bearer"})


def _is_open(request: web.Request) -> bool:
    if request.path in OPEN_PATHS:
        return True
    match = request.match_info
    return match.http_exception is None and getattr(match.handler, "hv_farm_public", False)


def middleware(store, enabled: bool):
    """The aiohttp middleware; `store` is the gateway's JobStore (its pool serves the lookups)."""

    def lookup(header: str | None) -> Principal:
        with store.connection() as conn:
            return authenticate(conn, header)

    @web.middleware
    async def require_token(request: web.Request, handler) -> web.StreamResponse:
        if not enabled:
            request[PRINCIPAL_KEY] = OPERATOR
            return await handler(request)
        if _is_open(request):
            return await handler(request)
        try:
            request[PRINCIPAL_KEY] = await asyncio.to_thread(lookup, request.headers.get("Authorization"))
        except Unauthorized as refused:
            return unauthorized(str(refused))
        return await handler(request)

    return require_token


def install(app: web.Application, store, enabled: bool) -> None:
    """Inside the database middleware (a lookup that finds no database answers 503, not 500)."""
    if not enabled:
        log.warning(AUTH_OFF_WARNING)
    app.middlewares.append(middleware(store, enabled))
