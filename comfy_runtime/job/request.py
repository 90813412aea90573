"""What a caller may ask for, and the rules it must follow.

The rules live here once: predict.py builds its Cog Inputs from them, the HTTP edge answers
422 from the schema they produce, and VideoRequest enforces them again for callers that skip
Cog (the CLI, Python users, the remote worker).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from comfy_runtime.job.prompt import prompt_text_problem
from comfy_runtime.render.encode import DEFAULT_CRF, MAX_CRF, MIN_CRF

SIZE_MULTIPLE = 16  # the VAE downsamples 8x and the DiT patchifies 2x2
MIN_SIZE, MAX_SIZE = 64, 1280
FRAME_STRIDE = 4  # the causal VAE packs 4 frames per latent frame after the first
MIN_FRAMES, MAX_FRAMES = 1, 129
MAX_SEED = 2**32 - 1

SIZE_CHOICES = list(range(MIN_SIZE, MAX_SIZE + 1, SIZE_MULTIPLE))
FRAME_CHOICES = list(range(MIN_FRAMES, MAX_FRAMES + 1, FRAME_STRIDE))
OUTPUT_FORMATS = ("mp4", "webm", "gif")
OutputFormat = Literal["mp4", "webm", "gif"]


@dataclass(frozen=True)
class Bound:
    default: float
    ge: float
    le: float


STEPS = Bound(30, 1, 100)
GUIDANCE = Bound(6.0, 1.0, 20.0)
FLOW_SHIFT = Bound(7.0, 1.0, 20.0)
FPS = Bound(24, 1, 60)
DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FRAMES = 848, 480, 73
# Delivered-file quality on x264's scale (comfy_runtime/render/encode.py maps it for VP9; GIF ignores it).
CRF = Bound(DEFAULT_CRF, MIN_CRF, MAX_CRF)


class VideoRequest(BaseModel):
    """One text-to-video job, validated. Off-grid sizes and frame counts are rejected, not rounded:
    a silently different resolution is worse than an error that says which values are allowed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(min_length=1)
    width: int = DEFAULT_WIDTH
    height: int = DEFAULT_HEIGHT
    num_frames: int = DEFAULT_FRAMES
    steps: int = Field(int(STEPS.default), ge=STEPS.ge, le=STEPS.le)
    guidance: float = Field(GUIDANCE.default, ge=GUIDANCE.ge, le=GUIDANCE.le)
    flow_shift: float = Field(FLOW_SHIFT.default, ge=FLOW_SHIFT.ge, le=FLOW_SHIFT.le)
    fps: int = Field(int(FPS.default), ge=FPS.ge, le=FPS.le)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    output_format: OutputFormat = "mp4"
    crf: int = Field(int(CRF.default), ge=CRF.ge, le=CRF.le)

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_is_plain_text(cls, value: object) -> object:
        # "before": pydantic's own str check would refuse undecodable text with a less helpful message.
        problem = prompt_text_problem(value) if isinstance(value, str) else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("width", "height")
    @classmethod
    def _size_on_grid(cls, value: int, info) -> int:
        if value not in SIZE_CHOICES:
            lower = max(MIN_SIZE, min(MAX_SIZE, value - value % SIZE_MULTIPLE))
            raise ValueError(
                f"{info.field_name}={value} is not allowed: use a multiple of {SIZE_MULTIPLE} from "
                f"{MIN_SIZE} to {MAX_SIZE} (for example {lower})"
            )
        return value

    @field_validator("num_frames")
    @classmethod
    def _frames_on_grid(cls, value: int) -> int:
        if value not in FRAME_CHOICES:
            nearest = min(FRAME_CHOICES, key=lambda allowed: abs(allowed - value))
            raise ValueError(
                f"num_frames={value} is not allowed: use 4k+1 frames from {MIN_FRAMES} to {MAX_FRAMES} "
                f"(for example {nearest})"
            )
        return value

    def with_seed(self) -> VideoRequest:
        """This request with a concrete seed: the given one, or a fresh random one."""
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": random.SystemRandom().randint(0, MAX_SEED)})
