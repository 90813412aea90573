"""The progress lines a person reads (Cog's prediction logs, the CLI's stderr, a farm job's logs) while a render
runs: ProgressLog is the subscriber that writes a run's events (backends/contract.py RunEvent) as lines.

`node 9 SamplerCustomAdvanced` when a node starts, `SamplerCustomAdvanced step 3/30 (4.12 s/step,
ETA 1:55)` per step, a note as its text, a warning as `warning: ...`, and one closing summary line.
Programs read the events themselves, never these lines. s/step is the node's mean since it started (its
first step includes loading the model, so the rate settles over the first steps); the ETA is the pipeline's (render/eta.py: until
the video is delivered) where it has one, else for that node. The frame tap is our own node (graph/frame_tap.py): its generated id means nothing to a caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from comfy_runtime.backends.contract import NodeStarted, Note, RunDone, RunEvent, RunWarning, StepProgress
from comfy_runtime.graph.frame_tap import TAP_NODE_PREFIX

LogSink = Callable[[str], None]


def clock(seconds: float) -> str:
    """m:ss, or h:mm:ss from an hour."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressLog:
    def __init__(self, log_line: LogSink, now: Callable[[], float] = time.monotonic):
        self.log_line = log_line
        self.now = now
        self._node: str | None = None
        self._node_started = 0.0

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, NodeStarted):
            self._start_node(event.node_id)
            if event.node_id.startswith(TAP_NODE_PREFIX):
                self.log_line("saving the decoded frames for the encoder")
            else:
                self.log_line(f"node {event.node_id} {event.class_type}")
        elif isinstance(event, StepProgress):
            if event.node_id != self._node:  # steps from a node we saw no start for
                self._start_node(event.node_id)
            name = event.class_type or "a node"
            if str(event.node_id).startswith(TAP_NODE_PREFIX):
                name = "saving frames"
            line = f"{name} step {event.step}/{event.total}"
            if event.step > 0:
                per_step = (self.now() - self._node_started) / event.step
                left = per_step * max(0, event.total - event.step) if event.eta_seconds is None else event.eta_seconds
                line += f" ({per_step:.2f} s/step, ETA {clock(left)})"
            self.log_line(line)
        elif isinstance(event, Note):
            self.log_line(event.text)
        elif isinstance(event, RunWarning):
            self.log_line(f"warning: {event.text}")
        elif isinstance(event, RunDone):
            self.log_line(summary_line(event.timings, event.width, event.height, event.num_frames, event.seed,
                                       event.video_name))

    def _start_node(self, node_id: str | None) -> None:
        self._node = node_id
        self._node_started = self.now()


def summary_line(timings: dict[str, float], width: int, height: int, frames: int, seed: int, video_name: str) -> str:
    return (f"done: {width}x{height}, {frames} frames, seed {seed} in {timings['total_seconds']:.1f} s "
            f"(ComfyUI {timings['comfyui_seconds']:.1f} s, encode {timings['encode_seconds']:.1f} s) -> {video_name}")
