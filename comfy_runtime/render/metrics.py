"""Where a render's time went, per stage, from the node events both backends report.

A node's time runs from its "executing" event to the next node's (or to the end of the run): ComfyUI runs one
node at a time, and a node it takes from its output cache sends no event, so cached loaders cost nothing here.
The figures become Rendered.metrics, which predict.py records through Cog's record_metric and the farm keeps
on the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from comfy_runtime.backends.contract import NodeStarted, ProgressEvent
from comfy_runtime.graph.model_chain import SAMPLERS

STAGES = ("load", "text", "sample", "decode", "other")


def stage_of(class_type: str) -> str:
    if class_type in SAMPLERS:
        return "sample"
    if "Loader" in class_type:  # UNETLoader, DualCLIPLoader, VAELoader, LoraLoaderModelOnly, CLIPVisionLoader ...
        return "load"
    if class_type.startswith("VAEDecode"):
        return "decode"
    if "TextEncode" in class_type:
        return "text"
    return "other"


@dataclass
class StageClock:
    started: list[tuple[float, str]] = field(default_factory=list)

    def wrap(self, on_progress: Callable[[ProgressEvent], None]) -> Callable[[ProgressEvent], None]:
        def timed(event: ProgressEvent) -> None:
            if isinstance(event, NodeStarted):
                self.started.append((time.perf_counter(), event.class_type))
            on_progress(event)

        return timed

    def seconds(self, ended: float) -> dict[str, float]:
        """Seconds per stage, for a run that ended at `ended` (perf_counter)."""
        totals = dict.fromkeys(STAGES, 0.0)
        for (at, class_type), (until, _) in zip(self.started, [*self.started[1:], (ended, "")], strict=True):
            totals[stage_of(class_type)] += max(0.0, until - at)
        return totals


def render_metrics(seed: int, steps: int, cache: str, cache_steps_skipped: int | None, timings: dict[str, float],
                   lora: dict[str, Any] | None) -> dict[str, Any]:
    """Flat names with dots, as Cog's record_metric takes them (a dot makes a nested object)."""
    metrics: dict[str, Any] = {"seed": seed, "steps": steps, "cache": cache}
    if cache_steps_skipped is not None:
        metrics["cache_steps_skipped"] = cache_steps_skipped
    metrics.update({f"timings.{name}": round(value, 4) for name, value in timings.items()})
    for name, value in (lora or {}).items():
        metrics[f"lora.{name}"] = value
    return metrics
