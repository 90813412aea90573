"""LoRAs by URL: fetched as hostile input, checked as safetensors, kept in a content-addressed cache.

The cache lives under <models>/loras/hv-cache/ so ComfyUI's LoraLoaderModelOnly finds each file by name:
  blobs/<sha256>.safetensors   one file per content, whatever URL it came from
  urls/<sha256 of the URL>.json which blob a URL gave (a hit fetches nothing)
  locks/                       lockf locks, as download.py takes them: NFS-backed volumes honour lockf
Two pods (or two threads) asking for one URL take its lock in turn: the second finds the first's blob.
The size bound is kept least-recently-used first (a blob's mtime is its last use); a blob used in the last
EVICTION_GRACE_SECONDS is never removed, so a LoRA another pod has just resolved is still there when its
ComfyUI loads it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from comfy_runtime.errors import InputRejected
from comfy_runtime.lora.reference import LoraRef, parse_lora_ref
from comfy_runtime.redact import url_without_credentials
from comfy_runtime.settings import Settings
from comfy_runtime.supply.digest import sha256_of
from comfy_runtime.supply.hugging_face import hf_auth_headers, hf_endpoint
from comfy_runtime.supply.safetensors_layout import SafetensorsLayoutError, check_layout
from comfy_runtime.supply.url_fetch import FetchPolicy, URLRefused, fetch_url

log = logging.getLogger(__name__)

CACHE_FOLDER = "hv-cache"
# A LoRA's header lists a few hundred to a few thousand tensors: a few hundred KB. safetensors itself allows
# 100 MB; anything near that is not a LoRA.
MAX_HEADER_BYTES = 16 << 20
MAX_TENSORS = 100_000
EVICTION_GRACE_SECONDS = 600.0


class LoraRejected(InputRejected):
    """A LoRA that must not be loaded (not safetensors, a bad header, too large, not found); nothing was loaded."""


@dataclass(frozen=True)
class SafetensorsHeader:
    keys: tuple[str, ...]
    data_bytes: int


def read_safetensors_header(path: Path, shown: str, max_header_bytes: int = MAX_HEADER_BYTES) -> SafetensorsHeader:
    """The tensor names, after the whole layout was checked as safetensors' loader checks it. Pickles (.ckpt, .pt,
    .bin, zip-wrapped torch.save files) are refused whatever their name: loading one can run code."""
    with path.open("rb") as handle:
        if _looks_like_pickle(handle.read(8)):
            raise LoraRejected(
                f"{shown} is a pickle (a PyTorch .ckpt/.pt/.bin checkpoint), not safetensors: pickles can run code "
                "when loaded, so they are refused whatever their name. Convert it to .safetensors and use that"
            )
    try:
        layout = check_layout(path, shown, max_header_bytes=max_header_bytes, max_tensors=MAX_TENSORS)
    except SafetensorsLayoutError as error:
        raise LoraRejected(str(error)) from None
    if not layout.keys:
        raise LoraRejected(f"{shown} holds no tensors; a LoRA holds 1 to {MAX_TENSORS}")
    return SafetensorsHeader(layout.keys, layout.data_bytes)


def _looks_like_pickle(head: bytes) -> bool:
    # Pickle protocol 2+ starts with PROTO (0x80) and its version; torch.save's default is a zip archive.
    return (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or head.startswith(b"PK\x03\x04")


@dataclass(frozen=True)
class ResolvedLora:
    name: str  # what LoraLoaderModelOnly's lora_name takes: the path under models/loras
    path: Path
    sha256: str  # empty for a file already under models/loras (not hashed per request)
    fetched: bool  # this request downloaded it
    keys: tuple[str, ...]
    seconds: float = 0.0  # finding (and fetching) it


class LoraCache:
    def __init__(self, models_dir: Path, policy: FetchPolicy, max_bytes: int):
        self.loras_dir = Path(models_dir) / "loras"
        self.root = self.loras_dir / CACHE_FOLDER
        self.policy = policy
        self.max_bytes = max_bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> LoraCache:
        policy = FetchPolicy.from_settings(settings, settings.lora_max_bytes, settings.lora_fetch_timeout)
        return cls(settings.models_dir, policy, settings.lora_cache_bytes)

    def resolve(self, text: str) -> ResolvedLora:
        """The local file for a lora_url, fetched and checked if it is not here yet. Raises LoraRejected or
        URLRefused (both InputRejected) naming the problem and the fix."""
        try:
            ref = parse_lora_ref(text)
        except ValueError as error:
            raise LoraRejected(str(error)) from None
        if ref.kind == "file":
            return self._local(ref)
        url = self._url(ref)
        return self._cached(url, url_without_credentials(ref.text))

    def _local(self, ref: LoraRef) -> ResolvedLora:
        path = self.loras_dir / ref.path
        if not path.is_file() or self.loras_dir.resolve() not in path.resolve().parents:
            raise LoraRejected(
                f"lora_url {ref.text!r}: there is no such file under {self.loras_dir}; put it there or give its URL"
            )
        header = read_safetensors_header(path, f"LoRA {ref.text!r}")
        return ResolvedLora(ref.path, path, "", False, header.keys)

    @staticmethod
    def _url(ref: LoraRef) -> str:
        if ref.kind == "hf":
            return f"{hf_endpoint()}/{ref.repo}/resolve/{ref.revision}/{ref.path}"
        return ref.url

    def _cached(self, url: str, shown: str) -> ResolvedLora:
        url_key = hashlib.sha256(url.encode()).hexdigest()
        index = self.root / "urls" / f"{url_key}.json"
        with _locked(self.root / "locks" / f"url-{url_key}.lock"):
            hit = self._hit(index)
            if hit is not None:
                log.info("LoRA %s: cached as %s", shown, hit.name)
                return hit
            tmp = self.root / "incoming" / f"{uuid.uuid4().hex}.download"
            try:
                # An HF token goes to HF's own origin only, and never follows a redirect (to its CDN) either.
                fetched = fetch_url(url, tmp, self.policy, headers=hf_auth_headers(url))
                header = read_safetensors_header(tmp, f"LoRA {shown}")
                sha = sha256_of(tmp)
                blob = self.root / "blobs" / f"{sha}.safetensors"
                with _locked(self.root / "locks" / "blobs.lock"):
                    blob.parent.mkdir(parents=True, exist_ok=True)
                    if blob.is_file():
                        tmp.unlink()
                    else:
                        os.replace(tmp, blob)
                    os.utime(blob)
                    _write_json(index, {"sha256": sha, "url": shown, "size": fetched.size})
                    self._evict(keep=blob)
            finally:
                tmp.unlink(missing_ok=True)
            log.info("LoRA %s: fetched %d bytes, sha256 %s", shown, fetched.size, sha)
            return ResolvedLora(self._name(blob), blob, sha, True, header.keys)

    def _hit(self, index: Path) -> ResolvedLora | None:
        try:
            sha = json.loads(index.read_text())["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        blob = self.root / "blobs" / f"{sha}.safetensors"
        with _locked(self.root / "locks" / "blobs.lock"):
            if not blob.is_file():
                return None  # evicted: fetch again
            os.utime(blob)  # its last use, for the LRU order
        try:
            header = read_safetensors_header(blob, f"cached LoRA {blob.name}")
        except LoraRejected as error:  # damaged on disk since it was checked: fetch it again
            log.warning("%s; removed it from the cache", error)
            self._forget(index, blob)
            return None
        return ResolvedLora(self._name(blob), blob, sha, False, header.keys)

    def forget(self, text: str, lora: ResolvedLora) -> bool:
        """Remove a cached LoRA that ComfyUI could not load, with its URL index entry, so the next request for
        that URL fetches and checks it again instead of failing from the cache. False for a file not cached here."""
        ref = parse_lora_ref(text)
        if ref.kind == "file" or self.root not in lora.path.parents:
            return False
        url_key = hashlib.sha256(self._url(ref).encode()).hexdigest()
        self._forget(self.root / "urls" / f"{url_key}.json", lora.path)
        return True

    def _forget(self, index: Path, blob: Path) -> None:
        with _locked(self.root / "locks" / "blobs.lock"):
            index.unlink(missing_ok=True)
            blob.unlink(missing_ok=True)

    def _evict(self, keep: Path) -> None:
        """Least recently used first, until the blobs fit the bound (caller holds blobs.lock)."""
        blobs = []
        for path in (self.root / "blobs").glob("*.safetensors"):
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                blobs.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in blobs)
        now = time.time()
        for mtime, size, path in sorted(blobs):
            if total <= self.max_bytes:
                break
            if path == keep or now - mtime < EVICTION_GRACE_SECONDS:
                continue
            path.unlink(missing_ok=True)
            total -= size
            log.info("LoRA cache over %d bytes: removed %s (least recently used)", self.max_bytes, path.name)
        if total > self.max_bytes:
            log.warning(
                "LoRA cache holds %d bytes, over HV_LORA_CACHE_BYTES=%d: every other LoRA was used in the last %g s. "
                "Raise HV_LORA_CACHE_BYTES", total, self.max_bytes, EVICTION_GRACE_SECONDS,
            )

    def _name(self, blob: Path) -> str:
        return blob.relative_to(self.loras_dir).as_posix()


_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _locked(lock_path: Path):
    """Exclusive across pods (lockf, as download.py takes it: NFS-backed volumes honour it) and across threads of
    this process, which lockf does not separate: its locks belong to the process."""
    with _THREAD_LOCKS_GUARD:
        thread_lock = _THREAD_LOCKS.setdefault(str(lock_path), threading.Lock())
    with thread_lock:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as handle:
            fcntl.lockf(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(handle, fcntl.LOCK_UN)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


__all__ = ["LoraCache", "LoraRejected", "ResolvedLora", "URLRefused", "read_safetensors_header"]
