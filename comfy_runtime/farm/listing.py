"""GET /predictions: the caller's predictions, newest first, a page at a time (what the jobs page polls).

The page of results is Replicate's list shape, `{"results": [...], "next": url-or-null}`, with a keyset cursor
(`?before=<id>`: the rows older than that one), so a page stays right while new jobs arrive, and no OFFSET
scans the table. Each result is the prediction object of GET /predictions/{id} without its logs (a list of
twenty must not carry twenty render logs; GET the one to read them).
"""

from __future__ import annotations

from typing import Any

from comfy_runtime.errors import InputRejected
from comfy_runtime.farm.store import PREDICTION_SELECT, JobStore, prediction_json

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class BadListQuery(InputRejected):
    """A list query parameter out of its range; the message names it and the allowed values."""


def parse_limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        raise BadListQuery(f"limit={text[:40]!r} is not a whole number: use 1-{MAX_LIMIT}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadListQuery(f"limit={limit} is out of range: use 1-{MAX_LIMIT}")
    return limit


def list_predictions(store: JobStore, limit: int = DEFAULT_LIMIT, before: str | None = None,
                     where: str = "TRUE", params: tuple = ()) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `limit` predictions older than `before` (newest first) and the cursor of the next page, or None.

    `where` narrows the rows (an owner's, once predictions have one) with its `params`; it is the caller's SQL,
    never the client's text."""
    cursor = ""
    values: tuple = params
    if before:
        # (created_at, id) orders rows created in the same microsecond too. The cursor row must be one the caller
        # may see (the same `where`): another owner's id gives an empty page, not a glimpse of when it was made.
        cursor = ("AND (p.created_at, p.id) < (SELECT p.created_at, p.id FROM hv_farm_predictions p "
                  f"WHERE p.id = %s AND ({where}))")
        values = (*values, before, *params)
    with store.connection() as conn:
        rows = conn.execute(
            f"{PREDICTION_SELECT} WHERE ({where}) {cursor} ORDER BY p.created_at DESC, p.id DESC LIMIT %s",
            (*values, limit + 1),
        ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    results = []
    for row in rows:
        body = prediction_json(row)
        body.pop("logs", None)
        results.append(body)
    return results, (rows[-1]["id"] if more and rows else None)
