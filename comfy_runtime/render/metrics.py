"""Where a render's time went, per stage, from the node events both backends report.

A node's time runs from its "executing" event to the next node's (or to the end of the run): ComfyUI runs one
node at a time, and a node it takes from its output cache sends no event, so cached loaders cost nothing here.
StageClock is a subscriber of a run's events (backends/contract.py); MetricsRecorder is the one that hands each
metric of the finished prediction (RunDone) to Cog's record_metric. The farm keeps the same metrics on the job, in
the nested form Cog's response shows them (as_response).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from comfy_runtime.backends.contract import NodeStarted, RunDone, RunEvent
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

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, NodeStarted):
            self.started.append((event.at, event.class_type))

    def seconds(self, ended: float) -> dict[str, float]:
        """Seconds per stage, for a run that ended at `ended` (perf_counter)."""
        totals = dict.fromkeys(STAGES, 0.0)
        for (at, class_type), (until, _) in zip(self.started, [*self.started[1:], (ended, "")], strict=True):
            totals[stage_of(class_type)] += max(0.0, until - at)
        return totals


class MetricsRecorder:
    """Each metric of a delivered prediction, to a sink taking (name, value), as Cog's record_metric does."""

    def __init__(self, record_metric: Callable[[str, Any], None]):
        self.record_metric = record_metric

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, RunDone):
            for name, value in event.metrics.items():
                self.record_metric(name, value)


def as_response(metrics: dict[str, Any]) -> dict[str, Any]:
    """The flat dotted names nested, as Cog's response shows what record_metric recorded."""
    nested: dict[str, Any] = {}
    for name, value in metrics.items():
        *parents, leaf = name.split(".")
        holder = nested
        for parent in parents:
            holder = holder.setdefault(parent, {})
        holder[leaf] = value
    return nested


def render_metrics(seed: int, steps: int, cache: str, cache_steps_skipped: int | None, comfyui_seconds: float,
                   timings: dict[str, float], lora: dict[str, Any] | None) -> dict[str, Any]:
    """Flat names with dots, as Cog's record_metric takes them (a dot makes a nested object). comfyui_seconds:
    ComfyUI's own execution time (RunResult.execution_seconds); timings: seconds per stage."""
    metrics: dict[str, Any] = {"seed": seed, "steps": steps, "cache": cache, "comfyui_seconds": round(comfyui_seconds, 4)}
    if cache_steps_skipped is not None:
        metrics["cache_steps_skipped"] = cache_steps_skipped
    metrics.update({f"timings.{name}": round(value, 4) for name, value in timings.items()})
    for name, value in (lora or {}).items():
        metrics[f"lora.{name}"] = value
    return metrics
