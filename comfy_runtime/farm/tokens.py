"""API tokens for the farm's gateway: who may submit, whose predictions one may see, how many may run at once.

A token is 256 random bits (`hvf_` + urlsafe base64), shown once when it is created. PostgreSQL keeps only its
SHA-256: the token is high-entropy, so a fast hash is as safe as a slow one against guessing (2^256 candidates,
no dictionary to try), and one SHA-256 per request costs microseconds where bcrypt/argon2 would cost tens of
milliseconds per request, for no gain (a slow hash is for low-entropy passwords). The lookup is by that hash
(a unique index), and the stored hash is then compared to the computed one with hmac.compare_digest.

Each token also has a webhook signing secret (`whsec_` + base64 of 32 random bytes, the Standard Webhooks form),
shown once at creation too. Unlike the token it is kept as it is: the worker needs the secret itself to sign
(farm/signing.py), and an encryption key would sit in the same Secret as the database URL, protecting nothing
that reading the database with that URL does not already give away.

Tokens are never cached: every request looks its token up, so a revoked one is refused on the very next request.
Revoking keeps the row (its predictions keep their owner, visible to admins); a revoked name is not reused.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from comfy_runtime.errors import HunyuanVideoError, InputRejected

TOKEN_PREFIX = "hvf_"
SECRET_PREFIX = "whsec_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_TOKEN_CHARS = 200  # a header longer than any token we issue is not looked up

TOKENS_DDL = """
CREATE TABLE IF NOT EXISTS hv_farm_tokens (
    name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    token_sha256 bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    admin boolean NOT NULL DEFAULT false,
    max_active integer CHECK (max_active IS NULL OR max_active >= 1),
    webhook_secret text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    rotated_at timestamptz,
    revoked_at timestamptz
);
-- Every prediction belongs to the token that created it; rows from before tokens (or made with auth off, or by
-- the jobs CLI) have none, and only admin tokens see them.
ALTER TABLE hv_farm_predictions ADD COLUMN IF NOT EXISTS token_name text REFERENCES hv_farm_tokens(name);
CREATE INDEX IF NOT EXISTS hv_farm_predictions_token_idx ON hv_farm_predictions (token_name, status);
"""


class TokenError(HunyuanVideoError, ValueError):
    """A token command that cannot be done as asked (a taken name, an unknown one); the message says what to do."""

    exit_status = 2


class Unauthorized(HunyuanVideoError, PermissionError):
    """No token, an unknown one or a revoked one: the gateway answers 401 with this one-line message."""


class OverLimit(InputRejected):
    """The token has its --max-active jobs queued or running: the gateway answers 429 with Retry-After."""


@dataclass(frozen=True)
class Principal:
    """Who a request is: a token's name, or nobody (auth off, the operator's CLI) who sees everything."""

    name: str | None
    admin: bool
    max_active: int | None = None

    @property
    def sees_all(self) -> bool:
        return self.admin or self.name is None


OPERATOR = Principal(name=None, admin=True)  # the jobs CLI (it holds the database URL) and the gateway with auth off


@dataclass(frozen=True)
class Created:
    name: str
    token: str
    webhook_secret: str


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise TokenError(f"token name {name[:80]!r} is not allowed: use 1-64 letters, digits, '_', '.', '@' or '-', "
                         "starting with a letter or digit (e.g. alice or ci-bot)")
    return name


def create(conn: psycopg.Connection, name: str, *, admin: bool = False, max_active: int | None = None) -> Created:
    _check_name(name)
    if max_active is not None and max_active < 1:
        raise TokenError(f"--max-active {max_active}: give 1 or more, or leave it out for no limit")
    token, secret = new_token(), new_webhook_secret()
    try:
        conn.execute("INSERT INTO hv_farm_tokens (name, token_sha256, admin, max_active, webhook_secret) "
                     "VALUES (%s, %s, %s, %s, %s)", (name, digest(token), admin, max_active, secret))
    except psycopg.errors.UniqueViolation:
        raise TokenError(f"a token named {name!r} exists already (revoked names are kept): pick another name, or "
                         f"`jobs token rotate {name}` for a new token under the same name") from None
    return Created(name, token, secret)


def rotate(conn: psycopg.Connection, name: str, *, new_secret: bool = False) -> Created:
    """A new token under the same name (its predictions stay its own); the old token is refused from now on."""
    token = new_token()
    row = conn.execute(
        "UPDATE hv_farm_tokens SET token_sha256 = %s, rotated_at = now(), "
        "webhook_secret = CASE WHEN %s THEN %s ELSE webhook_secret END "
        "WHERE name = %s AND revoked_at IS NULL RETURNING webhook_secret",
        (digest(token), new_secret, new_webhook_secret(), name),
    ).fetchone()
    if row is None:
        raise TokenError(f"no active token named {name!r}: `jobs token list` shows them (a revoked one cannot be "
                         "rotated; create a new name)")
    return Created(name, token, _field(row, "webhook_secret"))


def revoke(conn: psycopg.Connection, name: str) -> None:
    row = conn.execute("UPDATE hv_farm_tokens SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL "
                       "RETURNING name", (name,)).fetchone()
    if row is None:
        raise TokenError(f"no active token named {name!r}: `jobs token list` shows them")


def listed(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every token's name and settings, never its hash or secret; with how many of its jobs are active now."""
    rows = conn.execute(
        "SELECT t.name, t.admin, t.max_active, t.created_at, t.rotated_at, t.revoked_at, "
        "(SELECT count(*) FROM hv_farm_predictions p WHERE p.token_name = t.name "
        " AND p.status IN ('starting', 'processing')) AS active "
        "FROM hv_farm_tokens t ORDER BY t.created_at, t.name").fetchall()
    return [_as_dict(row, ("name", "admin", "max_active", "created_at", "rotated_at", "revoked_at", "active"))
            for row in rows]


def authenticate(conn: psycopg.Connection, header: str | None) -> Principal:
    """The Principal for an `Authorization: Bearer <token>` header value; Unauthorized, with the fix, otherwise."""
    token = bearer(header)
    computed = digest(token)
    row = conn.execute("SELECT name, token_sha256, admin, max_active, revoked_at FROM hv_farm_tokens "
                       "WHERE token_sha256 = %s", (computed,)).fetchone()
    if row is None or not hmac.compare_digest(bytes(_field(row, "token_sha256")), computed):
        raise Unauthorized("the token is not one this farm issued: check it, or ask an admin for one "
                           "(`jobs token create --name NAME`)")
    if _field(row, "revoked_at") is not None:
        raise Unauthorized(f"the token of {_field(row, 'name')!r} was revoked: ask an admin for a new one "
                           "(`jobs token create` or `jobs token rotate`)")
    return Principal(_field(row, "name"), bool(_field(row, "admin")), _field(row, "max_active"))


def bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("no token: send `Authorization: Bearer <token>` (an admin makes one with "
                           "`jobs token create --name NAME`)")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header is not `Bearer <token>`: send `Authorization: Bearer <token>`")
    if len(token) > MAX_TOKEN_CHARS or not token.startswith(TOKEN_PREFIX):
        raise Unauthorized("the token is not one this farm issued: check it, or ask an admin for one "
                           "(`jobs token create --name NAME`)")
    return token


def check_quota(conn: psycopg.Connection, principal: Principal) -> None:
    """Inside the submit transaction: lock the token's row (concurrent submits of one token queue here, so two
    cannot both take the last slot; a revoke in between is seen) and refuse past its --max-active."""
    if principal.name is None:
        return
    row = conn.execute("SELECT max_active, revoked_at FROM hv_farm_tokens WHERE name = %s FOR UPDATE",
                       (principal.name,)).fetchone()
    if row is None or _field(row, "revoked_at") is not None:
        raise Unauthorized(f"the token of {principal.name!r} was revoked: ask an admin for a new one")
    limit = _field(row, "max_active")
    if limit is None:
        return
    active = conn.execute("SELECT count(*) AS n FROM hv_farm_predictions WHERE token_name = %s "
                          "AND status IN ('starting', 'processing')", (principal.name,)).fetchone()
    if _field(active, "n") >= limit:
        raise OverLimit(f"token {principal.name!r} has {limit} job(s) queued or running, its limit (--max-active "
                        f"{limit}): retry when one ends, or cancel one")


def visible_to(principal: Principal, alias: str = "p.") -> tuple[str, tuple]:
    """The SQL condition (and its parameters) for the predictions `principal` may see: a list route's WHERE."""
    if principal.sees_all:
        return "TRUE", ()
    return f"{alias}token_name = %s", (principal.name,)


def secret_of(conn: psycopg.Connection, name: str | None) -> str | None:
    """The webhook signing secret of a prediction's token (None for a prediction without one)."""
    if name is None:
        return None
    row = conn.execute("SELECT webhook_secret FROM hv_farm_tokens WHERE name = %s", (name,)).fetchone()
    return _field(row, "webhook_secret") if row else None


def _field(row: Any, name: str) -> Any:
    return row[name] if isinstance(row, dict) else getattr(row, name, None)


def _as_dict(row: Any, names: tuple[str, ...]) -> dict[str, Any]:
    out = {name: _field(row, name) for name in names}
    for key, value in out.items():
        if isinstance(value, dt.datetime):
            out[key] = value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return out
