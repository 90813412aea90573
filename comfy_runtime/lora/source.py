"""The request's LoRA for one run: fetched (or found) before the plan is made (its fit after the run: fit.py)."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from comfy_runtime.backends.contract import RunEvents
from comfy_runtime.errors import NodeExecutionError
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.lora.cache import LoraCache, LoraRejected, ResolvedLora
from comfy_runtime.lora.reference import parse_lora_ref
from comfy_runtime.redact import url_without_credentials
from comfy_runtime.settings import Settings

log = logging.getLogger(__name__)


class LoraSource:
    """cache None: a remote backend, whose ComfyUI has its own models/loras: names pass through, URLs are refused
    (a file fetched here would not be where that server looks)."""

    def __init__(self, cache: LoraCache | None):
        self.cache = cache

    @classmethod
    def from_settings(cls, settings: Settings, local: bool) -> LoraSource:
        return cls(LoraCache.from_settings(settings) if local else None)

    def resolve(self, request: VideoRequest, events: RunEvents) -> ResolvedLora | None:
        text = request.lora_url
        if not text:
            return None
        started = time.perf_counter()
        if self.cache is None:
            ref = parse_lora_ref(text)
            if ref.kind != "file":
                raise LoraRejected(
                    f"lora_url {url_without_credentials(text)!r}: a remote ComfyUI cannot load a LoRA fetched here; put "
                    "the file in that server's models/loras and give its name, or use the embedded backend"
                )
            return ResolvedLora(ref.path, Path(ref.path), "", False, ())
        resolved = self.cache.resolve(text)
        resolved = dataclasses.replace(resolved, seconds=time.perf_counter() - started)
        how = "fetched" if resolved.fetched else "cached"
        events.note(f"LoRA {url_without_credentials(text)}: {how} ({resolved.seconds:.2f} s) as {resolved.name}, "
                 f"{len(resolved.keys)} tensors")
        return resolved

    def unloadable(self, request: VideoRequest, lora: ResolvedLora, error: NodeExecutionError) -> LoraRejected | None:
        """The one-line refusal for a LoRA that passed the layout check but that ComfyUI could not load (None when
        the failure is not the LoRA's): the cached file and its URL entry are removed, so it is fetched afresh."""
        failure = error.failure
        if "SafetensorError" not in failure.exception_type and not failure.class_type.startswith("LoraLoader"):
            return None
        evicted = self.cache is not None and self.cache.forget(request.lora_url, lora)
        first_line = (failure.message.splitlines() or [failure.exception_type])[0][:300]
        return LoraRejected(
            f"lora_url {url_without_credentials(request.lora_url)!r}: ComfyUI could not load it ({failure.exception_type}: "
            f"{first_line}){'; removed from the LoRA cache' if evicted else ''}. Re-save it with safetensors"
        )
