"""The request's LoRA: fetched (or found) before the graph is built, and its fit reported after the run."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from comfy_runtime.backends.lora_fit import LoraFit
from comfy_runtime.job.lora_ref import parse_lora_ref
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.redact import url_without_credentials
from comfy_runtime.settings import Settings
from comfy_runtime.supply.lora_cache import LoraCache, LoraRejected, ResolvedLora

log = logging.getLogger(__name__)
LogSink = Callable[[str], None]


class LoraSource:
    """cache None: a remote backend, whose ComfyUI has its own models/loras: names pass through, URLs are refused
    (a file fetched here would not be where that server looks)."""

    def __init__(self, cache: LoraCache | None):
        self.cache = cache

    @classmethod
    def from_settings(cls, settings: Settings, local: bool) -> LoraSource:
        return cls(LoraCache.from_settings(settings) if local else None)

    def resolve(self, request: VideoRequest, log_line: LogSink) -> ResolvedLora | None:
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
        log_line(f"LoRA {url_without_credentials(text)}: {how} ({resolved.seconds:.2f} s) as {resolved.name}, "
                 f"{len(resolved.keys)} tensors")
        return resolved

    def report(self, request: VideoRequest, lora: ResolvedLora | None, fits: tuple[LoraFit, ...],
               log_line: LogSink) -> dict[str, Any]:
        """The LoRA's metrics; a partial fit goes to the prediction's logs as a warning with the count."""
        if lora is None:
            return {}
        metrics: dict[str, Any] = {"strength": float(request.lora_strength)}
        if lora.sha256:
            metrics["sha256"] = lora.sha256
        if request.lora_strength == 0:
            log_line("LoRA strength 0: the model is used unchanged")
            return {**metrics, "applied_layers": 0}
        if not fits:
            log.warning("LoRA %s: its fit was not measured (a remote backend reports no patches)", lora.name)
            return metrics
        fit = dataclasses.replace(fits[0], lora_name=url_without_credentials(request.lora_url))
        if fit.applied < fit.total:
            log_line(f"warning: {fit.problem()}")
        else:
            log_line(fit.summary())
        return {**metrics, "applied_layers": fit.applied, "total_layers": fit.total}
