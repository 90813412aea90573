"""The ETA of a prediction: seconds until its video is delivered, on every step event (StepProgress.eta_seconds).

While a sampler runs: its remaining steps at the step time measured so far in this run, plus what comes after
sampling (decode, encode, upload). While the VAE decodes: its remaining tiles at their measured rate, plus
encode and upload. What comes after is learned per megapixel-frame (width x height x frames) from the previous
prediction of this process (the warm start's, with HV_WARM_START): before the first one it is not known and the
ETA counts the sampling alone. A second sampling stage (1.5's 1080p super-resolution) is not foreseen: its ETA
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


@dataclass
class AfterSampling:
    """Seconds per megapixel-frame of the stages after sampling, as the last prediction measured them."""

    per_mpf: dict[str, float] = field(default_factory=dict)

    def learn(self, seconds: dict[str, float], width: int, height: int, frames: int) -> None:
        mpf = width * height * frames / 1e6
        for stage in AFTER_SAMPLING:
            if stage in seconds and mpf > 0:
                self.per_mpf[stage] = seconds[stage] / mpf

    def estimate(self, stages: tuple[str, ...], width: int, height: int, frames: int) -> float:
        mpf = width * height * frames / 1e6
        return sum(self.per_mpf.get(stage, 0.0) for stage in stages) * mpf


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
