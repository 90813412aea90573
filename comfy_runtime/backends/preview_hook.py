"""Where previews meet ComfyUI (embedded backend only): the sampler's x0 estimate, handed to our progress hook.

ComfyUI's samplers (KSampler, SamplerCustom, SamplerCustomAdvanced) build their step callback with
latent_preview.prepare_callback, which asks latent_preview.get_previewer for a previewer and passes whatever
`decode_latent_to_preview_image(format, x0)` returns to the progress hook as its `preview` argument. We boot with
previews off (args.preview_method = none, so ComfyUI decodes nothing); our get_previewer returns a tap that hands on
the x0 tensor itself, untouched, at no cost. The embedded backend's progress hook, which alone knows the step and
the run's policy, turns it into a preview (render/preview.py) only on the steps due.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatentSnapshot:
    """The x0 estimate of one sampling step and the model's latent format (its latent2rgb factors)."""

    x0: Any  # torch.Tensor [B, C, T, h, w]
    latent_format: Any  # comfy.latent_formats.LatentFormat


class _X0Tap:
    def __init__(self, latent_format: Any):
        self.latent_format = latent_format

    def decode_latent_to_preview_image(self, preview_format: str, x0: Any) -> LatentSnapshot:
        return LatentSnapshot(x0, self.latent_format)


_installed = False


def install(latent_preview: Any) -> None:
    """Once per process: wrap latent_preview.get_previewer (prepare_callback looks it up at each sampling run)."""
    global _installed
    if _installed:
        return
    original = latent_preview.get_previewer

    def get_previewer(device: Any, latent_format: Any) -> Any:
        if getattr(latent_format, "latent_rgb_factors", None) is not None:
            return _X0Tap(latent_format)
        return original(device, latent_format)  # a model without factors: ComfyUI's own (none, previews are off)

    latent_preview.get_previewer = get_previewer
    _installed = True


def frames_of(snapshot: LatentSnapshot):
    """The first batch item's latent as preview frames (render/preview.py latent_to_frames)."""
    from comfy_runtime.render.preview import DEFAULT_UPSCALE, UPSCALE_BY_FORMAT, latent_to_frames

    fmt = snapshot.latent_format
    upscale = UPSCALE_BY_FORMAT.get(type(fmt).__name__, DEFAULT_UPSCALE)
    x0 = snapshot.x0
    if getattr(fmt, "latent_rgb_factors_reshape", None) is not None:  # as ComfyUI's Latent2RGBPreviewer does
        x0 = fmt.latent_rgb_factors_reshape(x0)
    return latent_to_frames(x0[0], fmt.latent_rgb_factors, fmt.latent_rgb_factors_bias, upscale)
