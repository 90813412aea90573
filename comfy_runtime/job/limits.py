"""What one prediction may cost: prompt tokens, memory, time. Checked before sampling starts, and
turned into advice (what to lower) when a limit is hit anyway."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from comfy_runtime.errors import HunyuanVideoError, OutOfMemory
from comfy_runtime.job.budget import MemoryBudget, budget_for, fitting_size, gpu_total_bytes
from comfy_runtime.job.params import FRAMES
from comfy_runtime.job.prompt import PromptTokenCounter
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.settings import Settings


class RenderOutOfMemory(HunyuanVideoError, RuntimeError):
    """The render ran out of memory; models and caches were freed, so the next prediction can run."""


@dataclass(frozen=True)
class JobLimits:
    budget: MemoryBudget
    tokens: PromptTokenCounter | None = None
    timeout: float | None = None  # seconds; None: no limit

    @classmethod
    def from_settings(cls, settings: Settings, comfyui_path: Path | None) -> JobLimits:
        return cls(
            budget=budget_for(settings.max_pixel_frames, gpu_total_bytes(settings.device)),
            tokens=PromptTokenCounter(comfyui_path) if comfyui_path is not None else None,
            timeout=settings.predict_timeout or None,
        )

    @classmethod
    def default(cls) -> JobLimits:
        return cls(budget=budget_for(None, None))

    def check(self, request: VideoRequest, stage_scale: float = 1.0, trained_max: int | None = None,
              model: str = "the model") -> None:
        """Raise PromptTooLong or OverBudget (ValueErrors that name the fix) for a job that must not start.
        stage_scale: how much larger than the request its largest stage samples (the 1080p stage: 1.5 per side);
        trained_max: the model's largest trained size in pixel-frames, when it is not HunyuanVideo v1's."""
        if self.tokens is not None:
            self.tokens.check(request.prompt)
        budget = self.budget.for_model(trained_max, model)
        if stage_scale == 1.0:
            budget.check(request.width, request.height, request.num_frames)
            return
        # The largest stage decides: budget its pixel-frames, in the caller's terms (the size asked for).
        scaled = MemoryBudget(int(budget.max_pixel_frames / stage_scale**2), f"{budget.source}; the "
                              f"super-resolution stage samples {stage_scale:g}x each side", budget.gpu_pixel_frames)
        scaled.check(request.width, request.height, request.num_frames)


def out_of_memory_advice(error: OutOfMemory, request: VideoRequest) -> str:
    failure = error.failure
    width, height, frames = request.width, request.height, request.num_frames
    half = width * height * frames // 2
    options = []
    smaller = fitting_size(width, height, frames, half)
    if smaller and smaller != (width, height):
        options.append(f"the size (for example {smaller[0]}x{smaller[1]})")
    fewer = [f for f in FRAMES.choices if width * height * f <= half]
    if fewer:
        options.append(f"num_frames (for example {fewer[-1]})")
    if "Decode" in failure.class_type:  # VAEDecode, VAEDecodeTiled ...: the tile size bounds its memory
        options.insert(0, f"the decode tile size (tile_size / temporal_size of node {failure.node_id} in the workflow)")
    lower = ", or ".join(options) or "the size and the number of frames"
    first_line = failure.message.splitlines()[0] if failure.message else failure.exception_type
    return (
        f"out of GPU memory in node {failure.node_id} ({failure.class_type}) at {width}x{height}, {frames} frames "
        f"({first_line}). Models and caches were freed, so the next prediction can run. Lower {lower}; "
        "or lower HV_MAX_PIXEL_FRAMES so jobs this large are refused up front"
    )
