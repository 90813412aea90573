"""Cog adapter: typed inputs in, video out. The work happens in comfy_runtime."""


from cog import BasePredictor, Input, Path

from comfy_runtime import VideoRenderer, VideoRequest
from comfy_runtime.prompt_text import MAX_PROMPT_CHARS
from comfy_runtime.request import (
    DEFAULT_FRAMES,
    DEFAULT_HEIGHT,
    DEFAULT_WIDTH,
    FLOW_SHIFT,
    FPS,
    FRAME_CHOICES,
    GUIDANCE,
    MAX_SEED,
    OUTPUT_FORMATS,
    SIZE_CHOICES,
    STEPS,
)


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.renderer = VideoRenderer.from_settings()
        self.renderer.start()

    def predict(
        self,
        prompt: str = Input(
            max_length=MAX_PROMPT_CHARS,
            description="What the video shows: plain text, at most 256 LLaMA tokens (about 1000 characters of English).",
        ),
        width: int = Input(
            default=DEFAULT_WIDTH, choices=SIZE_CHOICES,
            description="Frame width in pixels: a multiple of 16 from 64 to 1280. Other values are rejected, not rounded.",
        ),
        height: int = Input(
            default=DEFAULT_HEIGHT, choices=SIZE_CHOICES,
            description="Frame height in pixels: a multiple of 16 from 64 to 1280. Other values are rejected, not rounded.",
        ),
        num_frames: int = Input(
            default=DEFAULT_FRAMES, choices=FRAME_CHOICES,
            description="Number of frames: 4k+1 from 1 to 129 (73 frames at 24 fps is about 3 s).",
        ),
        steps: int = Input(
            default=int(STEPS.default), ge=int(STEPS.ge), le=int(STEPS.le),
            description="Sampling steps; 20-50 is the useful range, more is slower and sharper.",
        ),
        guidance: float = Input(
            default=GUIDANCE.default, ge=GUIDANCE.ge, le=GUIDANCE.le,
            description="Embedded guidance strength (HunyuanVideo is guidance-distilled; 6.0 is the reference).",
        ),
        flow_shift: float = Input(
            default=FLOW_SHIFT.default, ge=FLOW_SHIFT.ge, le=FLOW_SHIFT.le,
            description="Flow-matching shift of the noise schedule; higher spends more steps on coarse motion.",
        ),
        fps: int = Input(
            default=int(FPS.default), ge=int(FPS.ge), le=int(FPS.le),
            description="Frames per second of the output video.",
        ),
        seed: int | None = Input(
            default=None, ge=0, le=MAX_SEED,
            description="Random seed. Leave empty for a random one; the seed used is printed in the logs.",
        ),
        output_format: str = Input(
            default="mp4", choices=list(OUTPUT_FORMATS), description="Container and codec of the video.",
        ),
    ) -> Path:
        request = VideoRequest(
            prompt=prompt, width=width, height=height, num_frames=num_frames, steps=steps, guidance=guidance,
            flow_shift=flow_shift, fps=fps, seed=seed, output_format=output_format,
        )
        rendered = self.renderer.render(request)
        return Path(rendered.video)
