"""Live previews: the sampler's current x0 estimate as a small video, every HV_PREVIEW_EVERY steps.

No ComfyUI here (backends/preview_hook.py is the part that reaches into it): a latent [C, T, h, w] and the model's
latent2rgb factors (ComfyUI's comfy/latent_formats.py: HunyuanVideo 16 channels, HunyuanVideo15 32) become RGB
frames, one per latent frame, upscaled to a quarter of the output's width and height, encoded as a small mp4
(libx264 ultrafast) or an animated WebP. A preview is a PreviewReady event (backends/contract.py) with its bytes,
so a subscriber (the farm's uploader, Cog's streamed outputs) never depends on the run folder's lifetime.

Cost (bench/preview_cost.py): the matmul and upscale are on the sampler's device, the encode on the CPU;
at 720p (v1: 16x33x90x160 latent -> 33 frames of 320x180) the whole preview is ~0.13 s on one CPU core, against
~38 s per DiT step on one H100 (1,904 s / 50 steps): 0.3% of one step even at every step. The default (every 5th
step) keeps ten previews in a 50-step render, under 0.1% of its time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from PIL import Image

from comfy_runtime.backends.contract import PreviewReady
from comfy_runtime.errors import HunyuanVideoError

PreviewFormat = Literal["mp4", "webp"]
PREVIEW_FORMATS: tuple[str, ...] = ("mp4", "webp")
DEFAULT_EVERY = 5
# Both families render 24 fps and pack 4 frames into one latent frame: 6 previews frames a second lasts as long
# as the video will.
PREVIEW_FPS = 6
PREVIEW_CRF = 30  # small, and the preview is a rough draft anyway
# The preview is a quarter of the output's width and height: v1's VAE packs 8x8 pixels into a latent pixel, so 2x;
# 1.5's packs 16x16, so 4x (720p: 320x180 for either).
UPSCALE_BY_FORMAT = {"HunyuanVideo": 2, "HunyuanVideo15": 4}
DEFAULT_UPSCALE = 2


class PreviewSettingRefused(HunyuanVideoError, ValueError):
    """HV_PREVIEW_* or HV_STREAM_PREVIEWS cannot work as set; the message names the fix."""


@dataclass(frozen=True)
class PreviewPolicy:
    every: int = DEFAULT_EVERY  # a preview after every `every`-th sampling step; 0: none
    format: PreviewFormat = "mp4"

    @property
    def on(self) -> bool:
        return self.every > 0

    def due(self, step: int, total: int) -> bool:
        return self.on and 0 < step <= total and step % self.every == 0


OFF = PreviewPolicy(every=0)


def check_policy(every: int, format: str, stream: bool) -> PreviewPolicy:
    """The deployment's preview settings, refused at setup when they cannot work."""
    if every < 0:
        raise PreviewSettingRefused(f"HV_PREVIEW_EVERY={every} is negative: use 0 (no previews) or a step count "
                                    f"such as {DEFAULT_EVERY}")
    if format not in PREVIEW_FORMATS:
        raise PreviewSettingRefused(f"HV_PREVIEW_FORMAT={format!r} is not one of {', '.join(PREVIEW_FORMATS)}: "
                                    "use mp4 (smallest, cheapest) or webp")
    if stream and every == 0:
        raise PreviewSettingRefused("HV_STREAM_PREVIEWS=1 streams previews, and HV_PREVIEW_EVERY=0 makes none: set "
                                    f"HV_PREVIEW_EVERY={DEFAULT_EVERY} (or another step count), or unset "
                                    "HV_STREAM_PREVIEWS")
    return PreviewPolicy(every=every, format=format)  # type: ignore[arg-type]


def latent_to_frames(latent, factors: Sequence[Sequence[float]], bias: Sequence[float] | None,
                     upscale: int) -> np.ndarray:
    """[C, T, h, w] (or [C, h, w]) latent -> uint8 frames [T, h*upscale, w*upscale, 3], as ComfyUI's
    Latent2RGBPreviewer maps one frame (linear, then -1..1 to 0..255), for every frame."""
    import torch

    x = latent.detach()
    if x.ndim == 3:
        x = x.unsqueeze(1)
    weight = torch.tensor(factors, dtype=x.dtype, device=x.device).transpose(0, 1)  # [3, C]
    shift = torch.tensor(bias, dtype=x.dtype, device=x.device) if bias is not None else None
    rgb = torch.nn.functional.linear(x.movedim(0, -1), weight, bias=shift)  # [T, h, w, 3]
    rgb = rgb.movedim(-1, 1).float()  # [T, 3, h, w]
    if upscale > 1:
        rgb = torch.nn.functional.interpolate(rgb, scale_factor=upscale, mode="bilinear", align_corners=False)
    frames = ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).round().to(torch.uint8).movedim(1, -1)
    return frames.cpu().numpy()


def decoded_to_frames(video, temporal: int = 4, shrink: int = 4) -> np.ndarray:
    """A tiny VAE's decoded video [F, H, W, 3] in 0..1 -> the preview's frames: one per latent frame (0, 4, 8 ...),
    a quarter of the width and height, uint8: the same shape latent2rgb gives."""
    import torch

    picked = video[::temporal].movedim(-1, 1).float()  # [T, 3, H, W]
    small = torch.nn.functional.interpolate(picked, scale_factor=1 / shrink, mode="area")
    return small.clamp(0, 1).mul(255).round().to(torch.uint8).movedim(1, -1).cpu().numpy()


def encode_preview(frames: np.ndarray, format: PreviewFormat, path: Path, fps: int = PREVIEW_FPS) -> bytes:
    """Write the preview to `path`; return its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "webp":
        images = [Image.fromarray(frame) for frame in frames]
        images[0].save(path, format="WEBP", save_all=True, append_images=images[1:], duration=round(1000 / fps),
                       loop=0, quality=60, method=0)
        return path.read_bytes()
    height, width = frames.shape[1:3]
    # faststart (the index first, so a browser plays it at once) rewrites the file at the end: a real file, not memory.
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": str(PREVIEW_CRF), "threads": "1"}
        for frame in frames:
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[: stream.height, : stream.width]),
                                                 format="rgb24")
            container.mux(stream.encode(picture))
        container.mux(stream.encode())
    return path.read_bytes()


class PreviewMaker:
    """One run's previews, written into `folder` (the run's own, so they go with it) and handed out as events."""

    def __init__(self, policy: PreviewPolicy, folder: Path):
        self.policy = policy
        self.folder = Path(folder)
        self.made = 0

    def due(self, step: int, total: int) -> bool:
        return self.policy.due(step, total)

    def make(self, frames: np.ndarray, step: int, total: int, node_id: str | None, started: float,
             method: str = "latent2rgb") -> PreviewReady:
        self.made += 1
        # Numbered, not by step alone: a second sampler (1.5's 1080p stage) counts its steps from 1 again.
        path = self.folder / f"preview-{self.made:03d}-step{step:03d}.{self.policy.format}"
        data = encode_preview(frames, self.policy.format, path)
        height, width = frames.shape[1:3]
        return PreviewReady(node_id=node_id, step=step, total=total, path=path, data=data, frames=int(frames.shape[0]),
                            width=int(width) - int(width) % 2 if self.policy.format == "mp4" else int(width),
                            height=int(height) - int(height) % 2 if self.policy.format == "mp4" else int(height),
                            format=self.policy.format, seconds=time.perf_counter() - started, method=method)
