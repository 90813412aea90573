"""Where previews meet ComfyUI (embedded backend only): the sampler's x0 estimate, handed to our progress hook.

ComfyUI's samplers (KSampler, SamplerCustom, SamplerCustomAdvanced) build their step callback with
latent_preview.prepare_callback, which asks latent_preview.get_previewer for a previewer and passes whatever
`decode_latent_to_preview_image(format, x0)` returns to the progress hook as its `preview` argument. We boot with
previews off (args.preview_method = none, so ComfyUI decodes nothing); our get_previewer returns a tap that hands on
the x0 tensor itself, untouched, at no cost. The embedded backend's progress hook, which alone knows the step and
the run's policy, turns it into a preview (render/preview.py) only on the steps due.
"""

from __future__ import annotations

import atexit
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatentSnapshot:
    """The x0 estimate of one sampling step, the model's latent format (its latent2rgb factors) and, where its file
    is present, the family's tiny VAE decoder."""

    x0: Any  # torch.Tensor [B, C, T, h, w]
    latent_format: Any  # comfy.latent_formats.LatentFormat
    tae: Any = None  # comfy.sd.VAE holding comfy.taesd.taehv.TAEHV, or None: latent2rgb
    tae_name: str | None = None


class _X0Tap:
    def __init__(self, latent_format: Any, tae: Any = None, tae_name: str | None = None):
        self.latent_format = latent_format
        self.tae, self.tae_name = tae, tae_name

    def decode_latent_to_preview_image(self, preview_format: str, x0: Any) -> LatentSnapshot:
        return LatentSnapshot(x0, self.latent_format, self.tae, self.tae_name)


_taes: dict[str, Any] = {}  # path -> loaded decoder (a few MB; loaded once per process)
_refused: set[str] = set()
atexit.register(_taes.clear)  # released while ComfyUI's modules still exist (its ModelPatcher.__del__ needs them)


def _tae_for(latent_format: Any) -> tuple[Any, str | None]:
    """ComfyUI's own tiny VAE for this family (latent_format.taesd_decoder_name: taehv for v1, lighttaehy1_5 for
    1.5) when a file of that name is in models/vae_approx, loaded as ComfyUI's latent_preview loads it."""
    name = getattr(latent_format, "taesd_decoder_name", None)
    if not name:
        return None, None
    import folder_paths

    found = next((f for f in folder_paths.get_filename_list("vae_approx") if f.startswith(name)), None)
    path = folder_paths.get_full_path("vae_approx", found) if found else None
    if path is None or path in _refused:
        return None, None
    if path not in _taes:
        import comfy.sd
        import comfy.utils

        try:
            vae = comfy.sd.VAE(comfy.utils.load_torch_file(path))
            if vae.first_stage_model is None:
                raise ValueError("ComfyUI did not recognise it as a VAE")
        except Exception as error:  # a broken file costs the better previews, never the render
            log.warning("vae_approx/%s not used for previews (%s: %s): latent2rgb instead; replace or remove the file",
                        found, type(error).__name__, error)
            _refused.add(path)
            return None, None
        vae.first_stage_model.show_progress_bar = False
        _taes[path] = vae
        log.info("previews: %s decodes them (vae_approx/%s)", name, found)
    return _taes[path], name


_installed = False


def install(latent_preview: Any) -> None:
    """Once per process: wrap latent_preview.get_previewer (prepare_callback looks it up at each sampling run)."""
    global _installed
    if _installed:
        return
    original = latent_preview.get_previewer

    def get_previewer(device: Any, latent_format: Any) -> Any:
        if getattr(latent_format, "latent_rgb_factors", None) is not None:
            return _X0Tap(latent_format, *_tae_for(latent_format))
        return original(device, latent_format)  # a model without factors: ComfyUI's own (none, previews are off)

    latent_preview.get_previewer = get_previewer
    _installed = True


def frames_of(snapshot: LatentSnapshot):
    """The first batch item's latent as preview frames: the tiny VAE's where there is one, else latent2rgb
    (render/preview.py)."""
    from comfy_runtime.render.preview import DEFAULT_UPSCALE, UPSCALE_BY_FORMAT, decoded_to_frames, latent_to_frames

    if snapshot.tae is not None:
        decoded = snapshot.tae.decode(snapshot.x0[:1])  # [1, F, H, W, 3] in 0..1, F = 4T - 3
        return decoded_to_frames(decoded[0] if decoded.ndim == 5 else decoded)

    fmt = snapshot.latent_format
    upscale = UPSCALE_BY_FORMAT.get(type(fmt).__name__, DEFAULT_UPSCALE)
    x0 = snapshot.x0
    if getattr(fmt, "latent_rgb_factors_reshape", None) is not None:  # as ComfyUI's Latent2RGBPreviewer does
        x0 = fmt.latent_rgb_factors_reshape(x0)
    return latent_to_frames(x0[0], fmt.latent_rgb_factors, fmt.latent_rgb_factors_bias, upscale)
