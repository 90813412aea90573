"""What may be shown of a secret-bearing value in logs and error messages."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def url_without_credentials(url: str) -> str:
    """The URL without any user:password@ it carries (an endpoint setting may hold them)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else "")))
