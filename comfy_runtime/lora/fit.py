"""How well a LoRA fits the DiT it was applied to: the layers ComfyUI applied out of the layers the file holds.

A LoRA whose key names ComfyUI does not map onto the model loads without an error and changes nothing (ComfyUI
only logs "lora key not loaded"). The embedded backend reports what ComfyUI did with the file (AppliedLora: its
keys, where each layer maps on the model, which model keys got a new patch; embedded.py) and measure_fit turns
that into the fit, naming the key format, so the error says what the file is and what would fit; fit_metrics makes
the run's LoRA metrics of it, with a warning for a partial fit.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from comfy_runtime.errors import InputRejected
from comfy_runtime.redact import url_without_credentials

if TYPE_CHECKING:  # the contract carries LoraFit: import it only for the types
    from comfy_runtime.backends.contract import RunEvents
    from comfy_runtime.lora.cache import ResolvedLora

log = logging.getLogger(__name__)

# The endings ComfyUI's weight adapters read per layer (comfy/weight_adapter/*.py, comfy/lora.py load_lora).
_LAYER_SUFFIX = re.compile(
    r"(\.lora_(up|down|A|B|mid)(\.default)?\.weight|_lora\.(up|down)\.weight|\.lora\.(up|down)\.weight"
    r"|\.lora_linear_layer\.(up|down)\.weight|\.lora_[AB]|\.alpha|\.dora_scale|\.diff|\.diff_b|\.set_weight"
    r"|\.w_norm|\.b_norm|\.reshape_weight|\.(hada|lokr)_\w+|\.(oft|boft)_\w+)$"
)
ACCEPTED_FORMATS = (
    "ComfyUI names ('diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight'), diffusion-pipe names "
    "('transformer.double_blocks.0.img_attn_qkv.lora_A.weight') or kohya names with ComfyUI's module names "
    "('lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight')"
)


class LoraDoesNotFit(InputRejected):
    """None of the LoRA's layers exist in the model: the render would silently ignore it."""


def lora_layers(keys: Iterable[str]) -> list[str]:
    """The layers (module names) a LoRA file's keys belong to."""
    return sorted({_LAYER_SUFFIX.sub("", key) for key in keys})


def key_format(layers: list[str]) -> str:
    """What naming the layers follow, in words."""
    def share(test) -> bool:
        return bool(layers) and sum(map(test, layers)) * 2 >= len(layers)

    if share(lambda n: "transformer_blocks." in n or ".attn.to_" in n or ".attn1.to_" in n):
        return "diffusers names"
    if share(lambda n: n.startswith("lora_unet_")):
        if any(re.search(r"_(img|txt)_(mlp_fc\d|mod_linear)$|_modulation_linear$", n) for n in layers):
            return "musubi-tuner names (kohya style, with the reference model's module names)"
        if any(re.search(r"lora_unet_(down|up|input|output)_blocks|lora_unet_mid_block", n) for n in layers):
            return "Stable Diffusion UNet names (a LoRA for another model)"
        return "kohya names"
    if share(lambda n: n.startswith("lora_te")):
        return "text-encoder names"
    if share(lambda n: n.startswith("diffusion_model.")):
        return "ComfyUI names"
    if share(lambda n: n.startswith("base_model.model.")):
        return "PEFT names"
    if share(lambda n: n.startswith("transformer.")):
        return "diffusion-pipe names"
    if share(lambda n: n.startswith(("double_blocks.", "single_blocks."))):
        return "bare module names without a prefix"
    return "names of no known format"


@dataclass(frozen=True)
class LoraFit:
    lora_name: str
    model: str  # the model class ComfyUI detected, e.g. HunyuanVideo
    applied: int
    total: int
    key_format: str
    not_applied: tuple[str, ...] = ()  # a few of the layers ComfyUI did not map

    @property
    def fits(self) -> bool:
        return self.applied > 0

    def summary(self) -> str:
        return f"LoRA {self.lora_name}: {self.applied} of {self.total} layers applied to {self.model} ({self.key_format})"

    def problem(self) -> str:
        example = f" (e.g. {self.not_applied[0]!r})" if self.not_applied else ""
        if self.applied == 0:
            return (
                f"LoRA {self.lora_name} fits none of {self.model}'s layers (0 of {self.total} applied): its keys look "
                f"like {self.key_format}{example}. {self.model} LoRAs for ComfyUI use {ACCEPTED_FORMATS}: use a LoRA "
                f"trained for {self.model}, or convert its keys"
            )
        return (
            f"LoRA {self.lora_name}: only {self.applied} of {self.total} layers applied to {self.model}; the others "
            f"have no effect. Its keys look like {self.key_format}; not applied{example}. Convert them to "
            f"{ACCEPTED_FORMATS}"
        )


@dataclass(frozen=True)
class AppliedLora:
    """What the embedded backend saw ComfyUI do with one LoRA file on one model."""

    lora_name: str
    model: str  # the model class ComfyUI detected
    keys: tuple[str, ...]  # the file's keys, after ComfyUI's own conversion (comfy.lora_convert)
    target_of: Callable[[str], str | None]  # a layer's model key in ComfyUI's key map, or None
    patched: frozenset[str]  # the model keys that got a new patch


def measure_fit(applied: AppliedLora) -> LoraFit:
    """Applied layers: the file's layers whose model key got a new patch."""
    layers = lora_layers(applied.keys)
    hit = {layer for layer in layers if applied.target_of(layer) in applied.patched}
    missing = tuple(layer for layer in layers if layer not in hit)
    return LoraFit(applied.lora_name, applied.model, len(hit), len(layers), key_format(layers), missing[:3])


def fit_metrics(request: Any, lora: ResolvedLora | None, fits: tuple[LoraFit, ...], events: RunEvents) -> dict[str, Any]:
    """The LoRA's metrics for the run of `request` (concrete); a partial fit is a warning with the count."""
    if lora is None:
        return {}
    metrics: dict[str, Any] = {"strength": float(request.lora_strength)}
    if lora.sha256:
        metrics["sha256"] = lora.sha256
    if request.lora_strength == 0:
        events.note("LoRA strength 0: the model is used unchanged")
        return {**metrics, "applied_layers": 0}
    if not fits:
        log.warning("LoRA %s: its fit was not measured (a remote backend reports no patches)", lora.name)
        return metrics
    fit = dataclasses.replace(fits[0], lora_name=url_without_credentials(request.lora_url))
    if fit.applied < fit.total:
        events.warn(fit.problem())
    else:
        events.note(fit.summary())
    return {**metrics, "applied_layers": fit.applied, "total_layers": fit.total}
