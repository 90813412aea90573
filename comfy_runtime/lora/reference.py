"""The forms a `lora_url` may take, checked for form only (no network, no disk).

What may be fetched is the fetcher's call (supply/url_fetch.py); what the file holds is checked before anything
loads it (lora/cache.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal
from urllib.parse import urlsplit

from comfy_runtime.job.params import LORA_FORMS

_HF_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_FILE_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9 ._+()-]*")


@dataclass(frozen=True)
class LoraRef:
    kind: Literal["url", "hf", "file"]
    text: str  # as given
    url: str = ""  # kind url
    repo: str = ""  # kind hf: owner/name
    path: str = ""  # kind hf: the file in the repo; kind file: the name under models/loras
    revision: str = "main"


def parse_lora_ref(text: str) -> LoraRef:
    """The reference, or ValueError naming what is wrong and the forms allowed."""
    problem = lora_reference_problem(text)
    if problem:
        raise ValueError(problem)
    return _parse(text)


def lora_reference_problem(text: str) -> str | None:
    try:
        _parse(text)
    except _Bad as bad:
        return f"lora_url {text[:200]!r}: {bad}; use {LORA_FORMS}"
    return None


class _Bad(Exception):
    pass


def _parse(text: str) -> LoraRef:
    if text != text.strip() or not text:
        raise _Bad("it is empty or has spaces around it")
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme == "hf":
            return _parse_hf(text, parts.netloc + parts.path)
        if parts.scheme not in ("https", "http"):  # http only where the deployment allows it (the fetcher decides)
            raise _Bad(f"the scheme {parts.scheme!r} is not fetched")
        if not parts.hostname:
            raise _Bad("the URL has no host")
        return LoraRef("url", text, url=text)
    return LoraRef("file", text, path=_relative_name(text))


def _parse_hf(text: str, rest: str) -> LoraRef:
    rest, _, revision = rest.partition("@")
    revision = revision or "main"
    pieces = rest.split("/")
    if len(pieces) < 3 or not all(_HF_NAME.fullmatch(p) for p in pieces[:2]):
        raise _Bad("an hf:// reference names the owner, the repository and the file: hf://owner/repo/file.safetensors")
    if not _REVISION.fullmatch(revision) or ".." in revision:
        raise _Bad(f"the revision {revision!r} is not a branch, tag or commit")
    path = _relative_name("/".join(pieces[2:]))
    return LoraRef("hf", text, repo="/".join(pieces[:2]), path=path, revision=revision)


def _relative_name(name: str) -> str:
    pure = PurePosixPath(name)
    if pure.is_absolute() or "\\" in name or any(part in ("", ".", "..") for part in name.split("/")):
        raise _Bad("a file name must be a plain relative path (no leading /, no .. or empty parts)")
    if not all(_FILE_PART.fullmatch(part) for part in pure.parts):
        raise _Bad("a file name may hold letters, digits, spaces and . _ - + ( ) only")
    if pure.suffix.lower() != ".safetensors":
        raise _Bad("only .safetensors files are loaded")
    return str(pure)
