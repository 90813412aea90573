"""Webhooks in Cog's shape, sent to a URL the caller chose: treated as hostile.

Only http(s); the host must resolve to public addresses only (no loopback, private, link-local, reserved,
multicast), checked at submit and again right before each send (DNS can change between the two); redirects
are not followed, so there is no second target to check; each request has a timeout and the body a size cap.
Hosts an operator lists in HV_FARM_WEBHOOK_ALLOWED_HOSTS (an in-cluster receiver) skip the address check.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx

from comfy_runtime.errors import InputRejected
from comfy_runtime.supply.url_fetch import closed_after

log = logging.getLogger(__name__)

EVENTS = ("start", "output", "logs", "completed")  # Cog's: a filter may name any of them
SENT = ("start", "logs", "completed")  # the ones the farm sends (logs: rate-limited, farm/live.py); a prediction echoes its filter narrowed to these
MAX_BODY_BYTES = 1024 * 1024  # logs are the big part; a webhook is a notice, the GET has everything
MAX_URL_CHARS = 2048
COMPLETED_ATTEMPTS = 4  # Cog retries the terminal webhook too: it is the one a caller waits for


class WebhookRefused(InputRejected):
    """The webhook URL is not one the farm will call; the message says why and what is allowed."""


def check_events(events: Iterable[str] | None) -> list[str]:
    chosen = list(events) if events is not None else list(EVENTS)
    unknown = sorted(set(chosen) - set(EVENTS))
    if unknown:
        raise WebhookRefused(f"webhook_events_filter: unknown event(s) {unknown}; use any of {list(EVENTS)}")
    return chosen


def sent_events(chosen: Iterable[str] | None) -> list[str]:
    """The events of `chosen` (the caller's filter; None: all) that this farm will send, in Cog's order."""
    wanted = set(EVENTS if chosen is None else chosen)
    return [event for event in EVENTS if event in SENT and event in wanted]


def check_webhook_url(url: str, allowed_hosts: Iterable[str] = ()) -> str:
    """Raise WebhookRefused unless `url` is an http(s) URL whose host resolves to public addresses only."""
    if len(url) > MAX_URL_CHARS:
        raise WebhookRefused(f"webhook: the URL is longer than {MAX_URL_CHARS} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused(f"webhook: {url[:200]!r} is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise WebhookRefused("webhook: credentials in the URL are not accepted; use a token in its path or query")
    host = parts.hostname
    if host in set(allowed_hosts):
        return url
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, ValueError) as error:
        raise WebhookRefused(f"webhook: host {host!r} does not resolve ({error}); use a public host name") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise WebhookRefused(
                f"webhook: host {host!r} resolves to {address}, a non-public address; the farm only calls public "
                "hosts (an operator may allow an internal one with HV_FARM_WEBHOOK_ALLOWED_HOSTS)"
            )
    return url


def wants(row: dict[str, Any], event: str) -> bool:
    return bool(row.get("webhook")) and event in (row.get("webhook_events_filter") or EVENTS)


def send(url: str, body: dict[str, Any], *, allowed_hosts: Iterable[str] = (), timeout: float = 10,
         attempts: int = 1, sign: Callable[[bytes], dict[str, str]] | None = None) -> bool:
    """POST `body` to `url`; True when it answered 2xx. `sign` (farm/signing.py) gives each attempt's signature
    headers for the exact bytes sent. Never raises: a caller's dead receiver must not fail
    the render. The URL is re-checked first, for DNS that changed since the submit."""
    try:
        check_webhook_url(url, allowed_hosts)
    except WebhookRefused as error:
        log.warning("webhook not sent: %s", error)
        return False
    payload = json.dumps(body, default=str).encode()
    if len(payload) > MAX_BODY_BYTES:
        trimmed = dict(body, logs=(body.get("logs") or "")[-(MAX_BODY_BYTES // 2):])
        payload = json.dumps(trimmed, default=str).encode()[:MAX_BODY_BYTES]
    delay = 1.0
    for attempt in range(1, attempts + 1):
        started = time.monotonic()
        try:
            # `timeout` bounds the whole request, not each read: the receiver is the caller's, hostile until
            # shown otherwise. Its body is never read: the status is the answer.
            with httpx.Client(timeout=timeout, follow_redirects=False) as client, closed_after(client, timeout), \
                    client.stream("POST", url, content=payload, headers={
                        "Content-Type": "application/json", **(sign(payload) if sign else {})}) as response:
                status = response.status_code
            if 200 <= status < 300:
                return True
            log.warning("webhook %s answered %s (attempt %d/%d)", _shown(url), status, attempt, attempts)
        except (httpx.HTTPError, RuntimeError) as error:  # RuntimeError: closed at the deadline before it began
            problem = (f"no answer within {timeout:g} s" if time.monotonic() - started >= timeout
                       else type(error).__name__)
            log.warning("webhook %s failed: %s (attempt %d/%d)", _shown(url), problem, attempt, attempts)
        if attempt < attempts:
            time.sleep(delay)
            delay *= 2
    return False


def _shown(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{parts.path[:40]}"  # the query may carry the caller's token
