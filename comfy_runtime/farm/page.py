"""The jobs page the gateway serves (GET /ui) and the two read-only routes it is built on.

- GET /ui and /ui/<asset>: plain HTML, JS and CSS from comfy_runtime/farm/jobs_page/ (package data; no build step),
  under a Content-Security-Policy that allows script only from these files: a prompt that reaches the page as
  markup cannot run (the page inserts user text with textContent; the policy is the second lock).
- GET /inputs: every input's declaration from job/params.py (names, types, ranges, defaults, descriptions), so
  the page's form is generated from the same rules that VideoRequest enforces; the 422 of POST /predictions
  stays the judge and its one-line messages are shown beside the field.
- GET /predictions: the caller's predictions, newest first, paginated (farm/listing.py).
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

from aiohttp import web

from comfy_runtime.farm import auth
from comfy_runtime.farm.listing import BadListQuery, list_predictions, parse_limit
from comfy_runtime.farm.tokens import visible_to
from comfy_runtime.job.params import PARAMS

# The assets by name, each with its type: only these are served (no path from the URL reaches the filesystem).
ASSETS = {"index.html": "text/html", "page.js": "text/javascript", "page.css": "text/css"}
# Videos and previews come from the object store (presigned URLs on another host): media and images may load from
# any http(s) origin, since neither can run code; script, style and fetches only from the gateway itself.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data: http: https:; "
       "media-src 'self' http: https:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-cache"}


def _asset(name: str) -> bytes:
    return resources.files("comfy_runtime.farm").joinpath("jobs_page", name).read_bytes()


# The page's files and the input declarations need no token (auth.public): they hold no one's data, and the page
# signs in with a token before it asks for any job (GET /predictions is guarded).
@auth.public
async def page_asset(request: web.Request) -> web.Response:
    name = request.match_info.get("name") or "index.html"
    if name not in ASSETS:
        return web.json_response({"detail": f"no page file {name[:60]!r}: the page is at /ui"}, status=404)
    return web.Response(body=_asset(name), content_type=ASSETS[name], charset="utf-8", headers=PAGE_HEADERS)


@auth.public
async def redirect_to_page(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui")


def input_declarations() -> dict[str, Any]:
    return {"inputs": [param.declaration() for param in PARAMS]}


@auth.public
async def get_inputs(request: web.Request) -> web.Response:
    return web.json_response(input_declarations())


def add_routes(app: web.Application, client) -> None:
    """Mount the page, GET /inputs and GET /predictions on the gateway; `client` is its FarmClient."""

    async def list_route(request: web.Request) -> web.Response:
        try:
            limit = parse_limit(request.query.get("limit"))
        except BadListQuery as error:
            return web.json_response({"detail": [{"loc": ["query", "limit"], "msg": str(error), "type": "value_error"}]},
                                     status=422)
        before = request.query.get("before") or None
        viewer = auth.principal(request)
        # A member token lists its own predictions; an admin (or the gateway with auth off) every one.
        where, params = visible_to(viewer)
        results, after = await asyncio.to_thread(list_predictions, client.store, limit, before, where, params)
        next_url = f"/predictions?limit={limit}&before={after}" if after else None
        return web.json_response({"results": results, "next": next_url})

    app.router.add_get("/", redirect_to_page)
    app.router.add_get("/ui", page_asset)
    app.router.add_get("/ui/", page_asset)
    app.router.add_get("/ui/{name}", page_asset)
    app.router.add_get("/inputs", get_inputs)
    app.router.add_get("/predictions", list_route)
