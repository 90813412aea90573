"""The ETA of a prediction: seconds until its video is delivered, on every step event (StepProgress.eta_seconds).

While a sampler runs: its remaining steps at the step time measured so far in this run, plus what comes after
sampling (decode, encode, upload). While the VAE decodes: its remaining tiles at their measured rate, plus
encode and upload. What comes after is scaled by megapixel-frames (width x height x frames) from the previous
prediction of this process, when that one was at most MAX_SCALE_UP times smaller (the warm start's 64x64x1 job
measures loading, not pixels): before such a run it is not known and the ETA counts the sampling alone. A second sampling stage (1.5's 1080p super-resolution) is not foreseen: its ETA
starts when it starts.

The step time: from the sampler's first step to its latest (the first step also loads the model, so it is left
out once a second step is in); on the first step, that step's own time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from comfy_runtime.backends.contract import NodeStarted, RunEvent, StepProgress
from comfy_runtime.render.metrics import stage_of

AFTER_SAMPLING = ("decode", "encode", "upload")


# A stage's time is scaled by size from a run at most this much smaller: the warm start's 64x64x1 job (load and
# fixed costs, not pixels) would otherwise predict hours of decoding for a 720p video.
MAX_SCALE_UP = 8.0


@dataclass
class AfterSampling:
    """The stages after sampling as the last prediction measured them: seconds and megapixel-frames, per stage."""

    measured: dict[str, tuple[float, float]] = field(default_factory=dict)

    def learn(self, seconds: dict[str, float], width: int, height: int, frames: int) -> None:
        mpf = width * height * frames / 1e6
        for stage in AFTER_SAMPLING:
            if stage in seconds and mpf > 0:
                self.measured[stage] = (seconds[stage], mpf)

    def estimate(self, stages: tuple[str, ...], width: int, height: int, frames: int) -> float:
        """Seconds for `stages` at this size, scaled linearly from the last run; a stage last measured on a run more
        than MAX_SCALE_UP times smaller is not counted (not known yet)."""
        mpf = width * height * frames / 1e6
        total = 0.0
        for stage in stages:
            if stage in self.measured:
                seconds, measured_mpf = self.measured[stage]
                if mpf <= measured_mpf * MAX_SCALE_UP:
                    total += seconds * mpf / measured_mpf
        return total


class RunEta:
    """One run's ETA: annotates each StepProgress on its way to the subscribers."""

    def __init__(self, after: AfterSampling, width: int, height: int, frames: int):
        self.after = after
        self.size = (width, height, frames)
        self._node: str | None = None
        self._node_started = 0.0
        self._first: tuple[int, float] | None = None  # the node's first step seen, and when

    def annotating(self, events: Callable[[RunEvent], None]) -> Callable[[RunEvent], None]:
        def forward(event: RunEvent) -> None:
            events(self.annotate(event))

        return forward

    def annotate(self, event: RunEvent) -> RunEvent:
        if isinstance(event, NodeStarted):
            self._start(event.node_id, event.at)
            return event
        if not isinstance(event, StepProgress):
            return event
        if event.node_id != self._node:
            self._start(event.node_id, event.at)
        stage = stage_of(event.class_type or "")
        if stage not in ("sample", "decode") or event.step <= 0:
            return event
        if self._first is None or event.step <= self._first[0]:
            per_step = (event.at - self._node_started) / event.step
            self._first = (event.step, event.at)
        else:
            first_step, first_at = self._first
            per_step = (event.at - first_at) / (event.step - first_step)
        later = AFTER_SAMPLING if stage == "sample" else AFTER_SAMPLING[1:]
        seconds = max(0, event.total - event.step) * per_step + self.after.estimate(later, *self.size)
        return dataclasses.replace(event, eta_seconds=round(seconds, 3))

    def _start(self, node_id: str | None, at: float) -> None:
        self._node, self._node_started, self._first = node_id, at, None
