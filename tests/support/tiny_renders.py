"""Renders of the tiny real DiT through the Predictor, read back as frames: what the tiny-DiT suites compare."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from tests.support.media import VideoProbe, decode_frames, probe_video

BASE = dict(prompt="a red fox running through fresh snow", width=64, height=64, num_frames=5, steps=2,
            guidance=6.0, flow_shift=7.0, fps=24, seed=1234, output_format="mp4", crf=18)


class Output(NamedTuple):
    video: VideoProbe
    frames: np.ndarray


def render(predictor: Any, **overrides: Any) -> Output:
    """Predict and read the video back at once: the next prediction removes this one's folder."""
    path = predictor.predict(**{**BASE, **overrides})
    return Output(probe_video(path), np.stack(decode_frames(path)))


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
