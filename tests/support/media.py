"""Read a delivered video back: decode every frame, not just the header."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import av


@dataclass(frozen=True)
class VideoProbe:
    frames: int
    width: int
    height: int
    fps: float
    codec: str


def probe_video(path: Path) -> VideoProbe:
    """Decode every frame (not just the header) and report what is really there."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        rate = stream.average_rate or stream.guessed_rate
        return VideoProbe(
            frames=frames,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(rate) if rate else 0.0,
            codec=stream.codec_context.name,
        )


def decode_frames(path: Path) -> list:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def write_data_uri(uri: str, target: Path) -> Path:
    """Cog returns a sync prediction's file as a data URI: write its bytes to target."""
    header, payload = uri.split(",", 1)
    assert header.startswith("data:") and header.endswith(";base64"), header
    target.write_bytes(base64.b64decode(payload))
    return target
