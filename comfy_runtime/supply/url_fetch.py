"""Fetch a caller-given URL (a start image, a LoRA) as the hostile input it is.

Only https (http when the deployment allows it); the host is resolved here and every address it
resolves to must be public: loopback, private, link-local (cloud metadata at 169.254.169.254),
multicast and reserved ranges are refused. The connection then goes to the checked address itself
(Host header and TLS SNI keep the name), so a DNS answer that changes between check and connect
(rebinding) cannot reach a refused address. Redirects are followed by hand, each hop checked the
same way; the body is capped in size and time and written to a temporary name first.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from comfy_runtime.errors import InputRejected
from comfy_runtime.redact import url_without_credentials
from comfy_runtime.settings import Settings

Resolver = Callable[[str, int], list[str]]
MAX_REDIRECTS = 5


class URLRefused(InputRejected):
    """A URL that must not be fetched (scheme, address, size, type); nothing was fetched from it."""


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise URLRefused(f"cannot resolve {host!r} ({error.strerror}): check the URL's host name") from None
    return sorted({info[4][0] for info in infos})


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int
    timeout: float = 60.0  # per read: a stalled server is refused after this long
    # The whole fetch (connect, headers, body) ends by `deadline`, and after the first `throughput_window` seconds
    # the body must average `min_bytes_per_second`: a server trickling bytes resets a per-read timeout for ever.
    deadline: float = 900.0
    min_bytes_per_second: float = 65536.0
    throughput_window: float = 10.0
    allow_http: bool = False
    # Hosts (names or addresses) exempt from the address check: for tests on 127.0.0.1 and for a deployment
    # that deliberately fetches from an in-cluster server. Empty in production.
    allow_hosts: frozenset[str] = field(default_factory=frozenset)
    resolver: Resolver = _resolve

    @classmethod
    def from_settings(cls, settings: Settings, max_bytes: int, timeout: float = 60.0) -> FetchPolicy:
        return cls(max_bytes, timeout, settings.url_fetch_deadline, settings.url_min_bytes_per_second,
                   allow_http=settings.url_allow_http, allow_hosts=frozenset(settings.url_allow_hosts))

    @property
    def schemes(self) -> tuple[str, ...]:
        return ("https", "http") if self.allow_http else ("https",)

    def checked_address(self, url: str) -> tuple[httpx.URL, str]:
        """The URL and the one address to connect to, or URLRefused naming why not."""
        shown = url_without_credentials(url)
        parts = urlsplit(url)
        if parts.scheme not in self.schemes:
            allowed = " or ".join(self.schemes)
            raise URLRefused(f"{shown}: only {allowed} URLs are fetched; host the file on an {allowed} server")
        if not parts.hostname:
            raise URLRefused(f"{shown}: the URL has no host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = self.resolver(parts.hostname, port)
        if parts.hostname in self.allow_hosts:
            return httpx.URL(url), addresses[0]
        for address in addresses:
            problem = _address_problem(address)
            if problem:
                raise URLRefused(
                    f"{shown}: {parts.hostname} resolves to {address}, a {problem} address; only public addresses "
                    "are fetched (a deployment that must reach an internal host lists it in HV_URL_ALLOW_HOSTS)"
                )
        return httpx.URL(url), addresses[0]


def _address_problem(address: str) -> str | None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    for problem, test in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved or ip.is_unspecified),
    ):
        if test:
            return problem
    return None if ip.is_global else "non-public"


@dataclass(frozen=True)
class Fetched:
    path: Path
    size: int
    content_type: str
    final_url: str


def fetch_url(url: str, dest: Path, policy: FetchPolicy, headers: dict[str, str] | None = None) -> Fetched:
    """Download url to dest under the policy; the file appears under its final name only when complete."""
    partial = dest.with_name(dest.name + ".partial")
    dest.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    client = httpx.Client(timeout=policy.timeout, follow_redirects=False, trust_env=False)
    try:
        with client, closed_after(client, policy.deadline):
            for _ in range(MAX_REDIRECTS + 1):
                target, address = policy.checked_address(url)
                with client.stream("GET", _pinned(target, address), headers=_hop_headers(target, headers),
                                   extensions={"sni_hostname": target.host}) as response:
                    if response.is_redirect:
                        url = urljoin(str(target), response.headers.get("location", ""))
                        headers = None  # a token for the first host never follows a redirect elsewhere
                        continue
                    if response.status_code != 200:
                        raise URLRefused(
                            f"{url_without_credentials(str(target))} answered HTTP {response.status_code}: check the URL"
                        )
                    size = _stream_capped(response, partial, policy, str(target), started)
                    os.replace(partial, dest)
                    return Fetched(dest, size, response.headers.get("content-type", ""), str(target))
    except httpx.TimeoutException:
        raise URLRefused(
            f"{url_without_credentials(url)}: the server sent nothing for {policy.timeout:g} s (the per-read timeout); "
            "use a faster host"
        ) from None
    except (httpx.HTTPError, RuntimeError) as error:  # RuntimeError: the watchdog closed the client between hops
        if time.monotonic() - started >= policy.deadline:
            raise _past_deadline(url, policy) from None
        if isinstance(error, RuntimeError):
            raise
        raise URLRefused(f"{url_without_credentials(url)}: {type(error).__name__}: {error}") from None
    finally:
        partial.unlink(missing_ok=True)
    raise URLRefused(f"{url_without_credentials(url)}: more than {MAX_REDIRECTS} redirects; give the final URL")


@contextlib.contextmanager
def closed_after(client: httpx.Client, seconds: float) -> Iterator[None]:
    """A total deadline for whatever `client` does inside: httpx's timeouts are per read, so a server sending a
    byte now and then holds a request for ever. Closing the client from a timer breaks the read in progress
    (httpx.ReadError, or RuntimeError for a request started after it)."""
    timer = threading.Timer(seconds, client.close)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _pinned(target: httpx.URL, address: str) -> httpx.URL:
    host = f"[{address}]" if ":" in address else address
    port = f":{target.port}" if target.port else ""
    return httpx.URL(urlunsplit((target.scheme, host + port, target.raw_path.decode(), "", "")))


def _hop_headers(target: httpx.URL, extra: dict[str, str] | None) -> dict[str, str]:
    host = target.host + (f":{target.port}" if target.port else "")
    return {"Host": host, **(extra or {})}


def _past_deadline(url: str, policy: FetchPolicy) -> URLRefused:
    return URLRefused(
        f"{url_without_credentials(url)}: not fetched within the {policy.deadline:g} s deadline (HV_URL_FETCH_DEADLINE); "
        "use a faster host or raise the deadline"
    )


def _stream_capped(response: httpx.Response, partial: Path, policy: FetchPolicy, shown_url: str, started: float) -> int:
    max_bytes = policy.max_bytes
    body_started = time.monotonic()
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise URLRefused(f"{url_without_credentials(shown_url)} is {int(declared)} bytes; the limit is {max_bytes}")
    size = 0
    with partial.open("wb") as out:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise URLRefused(
                    f"{url_without_credentials(shown_url)} is larger than the limit of {max_bytes} bytes; use a smaller file"
                )
            out.write(chunk)
            now = time.monotonic()
            if now - started >= policy.deadline:
                raise _past_deadline(shown_url, policy)
            elapsed = now - body_started
            if elapsed >= policy.throughput_window and size / elapsed < policy.min_bytes_per_second:
                raise URLRefused(
                    f"{url_without_credentials(shown_url)}: {size / elapsed:.0f} bytes/s over {elapsed:.0f} s, under the "
                    f"floor of {policy.min_bytes_per_second:g} bytes/s (HV_URL_MIN_BYTES_PER_SECOND); use a faster host"
                )
    return size
