"""Fetch a caller-given URL (a start image, a LoRA) as the hostile input it is.

Only https (http when the deployment allows it); the host is resolved here and every address it
resolves to must be public: loopback, private, link-local (cloud metadata at 169.254.169.254),
multicast and reserved ranges are refused. The connection then goes to the checked address itself
(Host header and TLS SNI keep the name), so a DNS answer that changes between check and connect
(rebinding) cannot reach a refused address. Redirects are followed by hand, each hop checked the
same way; the body is capped in size and time and written to a temporary name first.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
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
    timeout: float = 60.0
    allow_http: bool = False
    # Hosts (names or addresses) exempt from the address check: for tests on 127.0.0.1 and for a deployment
    # that deliberately fetches from an in-cluster server. Empty in production.
    allow_hosts: frozenset[str] = field(default_factory=frozenset)
    resolver: Resolver = _resolve

    @classmethod
    def from_settings(cls, settings: Settings, max_bytes: int, timeout: float = 60.0) -> FetchPolicy:
        return cls(max_bytes, timeout, settings.url_allow_http, frozenset(settings.url_allow_hosts))

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
    try:
        with httpx.Client(timeout=policy.timeout, follow_redirects=False, trust_env=False) as client:
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
                    size = _stream_capped(response, partial, policy.max_bytes, str(target))
                    os.replace(partial, dest)
                    return Fetched(dest, size, response.headers.get("content-type", ""), str(target))
    except httpx.TimeoutException:
        raise URLRefused(
            f"{url_without_credentials(url)}: no complete answer within {policy.timeout:g} s; use a faster host"
        ) from None
    except httpx.HTTPError as error:
        raise URLRefused(f"{url_without_credentials(url)}: {type(error).__name__}: {error}") from None
    finally:
        partial.unlink(missing_ok=True)
    raise URLRefused(f"{url_without_credentials(url)}: more than {MAX_REDIRECTS} redirects; give the final URL")


def _pinned(target: httpx.URL, address: str) -> httpx.URL:
    host = f"[{address}]" if ":" in address else address
    port = f":{target.port}" if target.port else ""
    return httpx.URL(urlunsplit((target.scheme, host + port, target.raw_path.decode(), "", "")))


def _hop_headers(target: httpx.URL, extra: dict[str, str] | None) -> dict[str, str]:
    host = target.host + (f":{target.port}" if target.port else "")
    return {"Host": host, **(extra or {})}


def _stream_capped(response: httpx.Response, partial: Path, max_bytes: int, shown_url: str) -> int:
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
    return size
