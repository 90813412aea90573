"""Cog adapter: typed inputs in, video out. The work happens in comfy_runtime."""

from cog import BasePredictor, Input, Path

from comfy_runtime import VideoRenderer, VideoRequest
from comfy_runtime.delivery.deliverer import Delivery
from comfy_runtime.job.prompt import MAX_PROMPT_CHARS
from comfy_runtime.job.request import (
    CRF,
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
        # Storage first: a wrong bucket or key fails the boot in a second, not after ComfyUI has loaded.
        self.delivery = Delivery.from_settings()
        self.delivery.check()
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
        crf: int = Input(
            default=int(CRF.default), ge=int(CRF.ge), le=int(CRF.le),
            description="Quality of the mp4/webm: lower is better and larger (x264 scale; 18 looks lossless, 23 is "
            "x264's default). Ignored for gif.",
        ),
    ) -> Path:  # a file, or its object-storage URL as a str: both are a URI to a video (comfy_runtime/delivery/deliverer.py)
        request = VideoRequest(
            prompt=prompt, width=width, height=height, num_frames=num_frames, steps=steps, guidance=guidance,
            flow_shift=flow_shift, fps=fps, seed=seed, output_format=output_format, crf=crf,
        )
        rendered = self.renderer.render(request)
        delivered = self.delivery.deliver(self.renderer, rendered, request)
        return delivered if isinstance(delivered, str) else Path(delivered)
