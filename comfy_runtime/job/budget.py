"""The memory budget: refuse a job that cannot fit before sampling starts, and say what to lower.

A HunyuanVideo job's memory grows with width x height x frames ("pixel-frames"): the DiT attends
over (frames-1)/4+1 latent frames of (h/16)x(w/16) tokens, and the decoded frames are held as float32
RGB. Steps cost time, not memory. The budget is a cap on pixel-frames: HV_MAX_PIXEL_FRAMES when set,
else derived from the GPU's memory, else (CPU) the largest setting the model was trained for.
The GPU figure comes from the reference implementation's published peaks (720x1280x129: 60 GB,
544x960x129: 45 GB): ~25 GB of weights plus ~290 bytes per pixel-frame of activations. Only the
activations count here because ComfyUI streams weights that do not fit (partial loading); they must
fit in what is left after the CUDA context and fragmentation (HEADROOM).
"""

from __future__ import annotations

from dataclasses import dataclass

from comfy_runtime.errors import InputRejected
from comfy_runtime.job.params import FRAMES, SIZE

# HunyuanVideo's largest trained setting: 1280x720, 129 frames.
TRAINED_MAX_PIXEL_FRAMES = 1280 * 720 * 129
GPU_BYTES_PER_PIXEL_FRAME = 290
GPU_HEADROOM = 0.85


class OverBudget(InputRejected):
    """The job cannot fit in this server's memory budget."""


@dataclass(frozen=True)
class MemoryBudget:
    max_pixel_frames: int
    source: str  # where the number came from, named in the error
    # What the GPU's memory allows before the trained-size cap (None: set explicitly, or no GPU). A model with
    # another trained size (HunyuanVideo 1.5's 121 frames, its 1080p stage) re-caps it with for_model().
    gpu_pixel_frames: int | None = None

    @classmethod
    def for_gpu(cls, total_bytes: int) -> MemoryBudget:
        usable = int(total_bytes * GPU_HEADROOM) // GPU_BYTES_PER_PIXEL_FRAME
        return cls(min(TRAINED_MAX_PIXEL_FRAMES, usable), f"derived from {total_bytes / 2**30:.0f} GiB of GPU memory",
                   gpu_pixel_frames=usable)

    def for_model(self, trained_max: int | None, model: str) -> MemoryBudget:
        """This budget for a model whose largest trained size is trained_max pixel-frames (a setting wins)."""
        if trained_max is None or self.source == "set":
            return self
        if self.gpu_pixel_frames is not None:
            return MemoryBudget(min(trained_max, self.gpu_pixel_frames), f"the lower of: {self.source}; {model}'s "
                                f"largest trained size", self.gpu_pixel_frames)
        return MemoryBudget(trained_max, f"{model}'s largest trained size")

    def check(self, width: int, height: int, frames: int) -> None:
        """Raise OverBudget naming the job's size, the budget, and concrete smaller values that fit."""
        needed = width * height * frames
        if needed <= self.max_pixel_frames:
            return
        options = []
        fitting_frames = [f for f in FRAMES.choices if width * height * f <= self.max_pixel_frames]
        if fitting_frames:
            options.append(f"num_frames to {fitting_frames[-1]}")
        smaller = fitting_size(width, height, frames, self.max_pixel_frames)
        if smaller:
            options.append(f"the size to {smaller[0]}x{smaller[1]}")
        fix = "lower " + " or ".join(options) if options else "lower the size and the number of frames"
        raise OverBudget(
            f"{width}x{height} at {frames} frames is {needed:,} pixel-frames, over this server's memory "
            f"budget of {self.max_pixel_frames:,} ({self.source}, HV_MAX_PIXEL_FRAMES): {fix}"
        )


def fitting_size(width: int, height: int, frames: int, max_pixel_frames: int) -> tuple[int, int] | None:
    """The largest on-grid size with about this aspect ratio that fits, or None."""
    scale = (max_pixel_frames / (width * height * frames)) ** 0.5
    w = max(SIZE.start, int(width * scale) // SIZE.step * SIZE.step)
    h = max(SIZE.start, int(height * scale) // SIZE.step * SIZE.step)
    while w * h * frames > max_pixel_frames and (w > SIZE.start or h > SIZE.start):
        if w >= h and w > SIZE.start:
            w -= SIZE.step
        else:
            h -= SIZE.step
    return (w, h) if w * h * frames <= max_pixel_frames else None


def budget_for(max_pixel_frames: int | None, gpu_total_bytes: int | None) -> MemoryBudget:
    if max_pixel_frames:
        return MemoryBudget(max_pixel_frames, "set")
    if gpu_total_bytes:
        return MemoryBudget.for_gpu(gpu_total_bytes)
    return MemoryBudget(TRAINED_MAX_PIXEL_FRAMES, "the model's largest trained size, 1280x720x129")


def gpu_total_bytes(device: str) -> int | None:
    """Total memory of the GPU the runtime will use, or None on the CPU."""
    if device == "cpu":
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
