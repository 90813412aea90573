"""The runtime interface both backends implement, and what crosses it.

A backend runs an API-format ComfyUI graph and reports what happened in these types, so the
rest of the product never sees ComfyUI's own event dictionaries. RunEvent is everything one prediction
reports (the backend's node and step events, then the pipeline's notes, warnings, stage timings and its end);
RunEvents hands each event to every subscriber: the log line writer, the farm's row writer, the metrics
recorder, the GPU kit's timer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from comfy_runtime.errors import NodeFailure
from comfy_runtime.graph.types import Graph, NodeSchema
from comfy_runtime.lora.fit import LoraFit


@dataclass(frozen=True)
class NodeStarted:
    node_id: str
    class_type: str
    at: float = field(default_factory=time.perf_counter, compare=False)  # when it was reported


@dataclass(frozen=True)
class StepProgress:
    node_id: str | None
    class_type: str | None
    step: int
    total: int
    at: float = field(default_factory=time.perf_counter, compare=False)
    # Seconds until the video is delivered, as the pipeline estimates it (render/eta.py); None: not known yet.
    # The backend reports the step; the service adds this before any subscriber sees it.
    eta_seconds: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PreviewReady:
    """The sampler's current x0 estimate after `step` of `total`, as a small video (render/preview.py): every
    latent frame, a quarter of the output's width and height. `data` is the file's bytes (the file at `path`
    lives in the run's folder and goes with it)."""

    node_id: str | None
    step: int
    total: int
    path: Path
    data: bytes = field(repr=False)
    frames: int
    width: int
    height: int
    format: str  # mp4 or webp
    seconds: float  # what making it cost the sampler
    method: str = "latent2rgb"  # or the tiny VAE decoder that made it (taehv, lighttaehy1_5)
    at: float = field(default_factory=time.perf_counter, compare=False)


# The events a backend reports while a graph runs.
ProgressEvent = NodeStarted | StepProgress | PreviewReady
ProgressCallback = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class Note:
    """A line for the people following the run (the seed drawn, the start image fitted, the upload)."""

    text: str


@dataclass(frozen=True)
class RunWarning:
    """Something the caller should act on, though the run goes on (a LoRA that fits only in part)."""

    text: str


@dataclass(frozen=True)
class StageTimings:
    """Seconds per stage of one prediction (load, text, sample, decode, other, encode, upload, total...)."""

    seconds: dict[str, float]


@dataclass(frozen=True)
class RunDone:
    """One prediction delivered: what it made, and its metrics in the one shape every front door records."""

    width: int
    height: int
    num_frames: int
    seed: int
    video_name: str
    timings: dict[str, float]  # comfyui_seconds, encode_seconds, total_seconds: the summary line's figures
    metrics: dict[str, Any]  # render/metrics.py names, as Cog's record_metric takes them


# Everything one prediction reports, in order: what the backend sees, then what the pipeline adds.
RunEvent = NodeStarted | StepProgress | PreviewReady | Note | RunWarning | StageTimings | RunDone
RunEventSubscriber = Callable[[RunEvent], None]


class RunEvents:
    """One prediction's events, handed to each subscriber in turn. A subscriber that fails is logged and
    skipped: a broken log sink or row writer must not fail the render."""

    def __init__(self, subscribers: Iterable[RunEventSubscriber] = ()):
        self.subscribers = tuple(subscribers)

    def __call__(self, event: RunEvent) -> None:
        for subscriber in self.subscribers:
            try:
                subscriber(event)
            except Exception:
                logging.getLogger(__name__).exception("progress subscriber %r failed", subscriber)

    def note(self, text: str) -> None:
        self(Note(text))

    def warn(self, text: str) -> None:
        self(RunWarning(text))


@dataclass(frozen=True)
class RunResult:
    prompt_id: str
    files: list[Path]
    ui_outputs: dict[str, Any]
    execution_seconds: float
    # What the embedded backend measured inside ComfyUI; a remote backend cannot see it (empty / None).
    lora_fits: tuple[LoraFit, ...] = ()
    cache_steps_skipped: int | None = None


@dataclass
class RunTracker:
    """Where one run is (node, last step) and where its progress goes: what both backends report, and what a
    time-limit message names. Each backend's run state extends it with what its own transport needs."""

    graph: Graph
    on_progress: ProgressCallback | None
    current_node: str | None = field(default=None, init=False)
    last_step: StepProgress | None = field(default=None, init=False)

    def class_of(self, node_id: str | None) -> str | None:
        node = self.graph.get(str(node_id)) if node_id is not None else None
        return node.get("class_type") if node else None

    def emit(self, event: ProgressEvent) -> None:
        if isinstance(event, StepProgress):
            self.last_step = event
        if self.on_progress is not None:
            try:
                self.on_progress(event)
            except Exception:  # a broken log sink must not fail the render
                logging.getLogger(__name__).exception("progress callback failed")


class ComfyRuntime(Protocol):
    def start(self) -> None:
        """Boot ComfyUI and load its nodes; idempotent."""

    def node_schemas(self) -> dict[str, NodeSchema]:
        """Every registered node class, keyed by class_type."""

    def validate(self, graph: Graph) -> None:
        """Raise WorkflowInvalidError naming every bad node input."""

    def run(
        self, graph: Graph, output_dir: Path, on_progress: ProgressCallback | None = None, timeout: float | None = None
    ) -> RunResult:
        """Run the graph, writing outputs under output_dir; raise NodeExecutionError (OutOfMemory after freeing
        memory) or ExecutionInterrupted (RunTimedOut once `timeout` seconds have passed)."""

    def upload_input(self, path: Path, name: str | None = None) -> str:
        """Put a file (a start image) where the graph's LoadImage finds it; return the name to bind."""

    def interrupt(self) -> None:
        """Stop the running graph as soon as ComfyUI checks for interruption."""

    def close(self) -> None:
        """Release what start() acquired."""


# How long a cancel waits for ComfyUI to reach its next interrupt check before giving up on it.
INTERRUPT_GRACE_SECONDS = 120.0


# torch.cuda.OutOfMemoryError is an alias of torch.OutOfMemoryError; ComfyUI reports the type by name.
_OOM_TYPES = {"torch.OutOfMemoryError", "torch.cuda.OutOfMemoryError"}


def node_failure_from_event(data: dict[str, Any]) -> NodeFailure:
    """What failed, from the `execution_error` event ComfyUI sends (in-process, over /ws, and in /history)."""
    return NodeFailure(
        node_id=str(data.get("node_id")),
        class_type=str(data.get("node_type")),
        exception_type=str(data.get("exception_type")),
        message=str(data.get("exception_message", "")).strip(),
        traceback=list(data.get("traceback") or []),
    )


def is_out_of_memory(failure: NodeFailure) -> bool:
    return failure.exception_type in _OOM_TYPES or failure.exception_type.endswith("OutOfMemoryError")


def describe_validation_failure(error: dict[str, Any] | None, node_errors: dict[str, Any]) -> str:
    lines = []
    for node_id, info in (node_errors or {}).items():
        for reason in info.get("errors", []):
            details = reason.get("details") or ""
            lines.append(f"node {node_id} ({info.get('class_type')}): {reason.get('message')}: {details}".rstrip(": "))
    if not lines and error:
        lines.append(f"{error.get('message')}: {error.get('details')}".rstrip(": "))
    return "ComfyUI rejected the workflow:\n  " + "\n  ".join(lines or ["unknown validation error"])


def timed_out_message(timeout: float | None, run: RunTracker, stuck: str | None = None) -> str:
    """Why a run failed its time limit: where it was and, when ComfyUI did not stop (stuck says what then),
    what to do about the worker."""
    where = ""
    if run.current_node is not None:
        where = f" in node {run.current_node} ({run.class_of(run.current_node)})"
        if run.last_step is not None and run.last_step.node_id == run.current_node:
            where += f" at step {run.last_step.step}/{run.last_step.total}"
    outcome = stuck or "it was interrupted; nothing was saved"
    return (
        f"the prediction ran past its time limit of {timeout or 0:g} s (HV_PREDICT_TIMEOUT){where}: {outcome}. "
        "Lower steps, num_frames or the size, or raise HV_PREDICT_TIMEOUT"
    )
