"""Stand-ins for the HunyuanVideo parts that cannot run on a CPU, as ComfyUI nodes (benchmarks and tests).

The GPU kit (bench/gpu_kit) replaces the text-encoder loader of workflows/hunyuan_t2v.json with
HVStandInTextEncoders at the real width (4096, LLaVA-Llama3's hidden states): an 8B language model runs once
per job, and its cost is not what the kit measures. The tiny-DiT tests (tests/test_tiny_dit.py) replace the
text-encoder and VAE loaders with these. The nodes that use what they load stay the production ones: the real CLIPTextEncode calls
the stand-in encoder's tokenize()/encode_from_tokens_scheduled(), and the real VAEDecodeTiled (with the
production tile settings) calls the stand-in VAE's decode_tiled().

- HVStandInTextEncoders stands in for DualCLIPLoader(clip_l + llava_llama3_fp8_scaled, type hunyuan_video):
  the 8B LLaVA-Llama3 has a fixed config and cannot run on a CPU.
- HVStandInVideoVAE stands in for VAELoader(hunyuan_video_vae_bf16): its config is fixed by ComfyUI
  (128 base channels, 3D convs), far too slow on CPU for the many renders the tests make.
"""

from __future__ import annotations

import hashlib

import torch

# What the real parts hand on: HunyuanVideo's DiT takes per-token text states (LLaVA-Llama3, 4096 wide
# in production; as wide as the DiT's txt_in in a tiny one) and a pooled CLIP-L vector (768).
POOLED_DIM = 768
LATENT_CHANNELS = 16
# HunyuanVideo's VAE: 8x spatial, 4x temporal with the first frame kept (T latent frames -> 1 + 4*(T-1)).
SPATIAL_SCALE = 8
TEMPORAL_SCALE = 4


def _seeded(label: str, *shape: int) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(label.encode("utf-8")).digest()[:8], "little")
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class StandInHunyuanTextEncoder:
    """Stand-in for ComfyUI's CLIP object (clip_l + llava_llama3): deterministic embeddings from the text.

    Each word gets an embedding seeded by its hash (so prompts sharing words share token states), the
    pooled vector is seeded by the whole prompt. Same text, same conditioning, on every machine.
    """

    def __init__(self, context_dim: int):
        self.context_dim = context_dim

    def tokenize(self, text: str, **_: object) -> list[str]:
        return ["<bos>", *text.split()]

    def encode_from_tokens_scheduled(self, tokens: list[str], unprojected=False, add_dict=None, show_pbar=True):
        cond = torch.stack([_seeded(f"token:{token}", self.context_dim) for token in tokens]).unsqueeze(0)
        pooled = _seeded("pooled:" + " ".join(tokens), 1, POOLED_DIM)
        return [[cond, {"pooled_output": pooled, **(add_dict or {})}]]


class StandInHunyuanVideoVAE:
    """Stand-in for ComfyUI's VAE object (HunyuanVideo 3D VAE): a fixed linear latent-to-RGB map with the
    real VAE's shapes (16 channels -> RGB, x8 spatial, T -> 1 + 4*(T-1) frames) so frame counts and sizes
    match what the real decoder gives, and every latent change shows in the pixels."""

    def __init__(self, seed: int):
        self.to_rgb = _seeded(f"vae:{seed}", 3, LATENT_CHANNELS) / LATENT_CHANNELS**0.5

    def spacial_compression_decode(self) -> int:
        return SPATIAL_SCALE

    def temporal_compression_decode(self) -> int:
        return TEMPORAL_SCALE

    def decode_tiled(self, samples, tile_x=None, tile_y=None, overlap=None, tile_t=None, overlap_t=None):
        return self.decode(samples)

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        """(B, 16, T, h, w) latents -> (B, 1 + 4*(T-1), 8h, 8w, 3) images in [0, 1], as VAE.decode returns."""
        if samples.ndim != 5 or samples.shape[1] != LATENT_CHANNELS:
            raise ValueError(f"expected HunyuanVideo latents (B, {LATENT_CHANNELS}, T, h, w), got {tuple(samples.shape)}")
        rgb = torch.einsum("cl,blthw->bcthw", self.to_rgb, samples.float())
        # Frame 0 is latent 0; each later latent yields 4 frames blended from its predecessor, like the
        # causal VAE's temporal upsampling.
        frames = [rgb[:, :, :1]]
        for t in range(1, rgb.shape[2]):
            for step in range(1, TEMPORAL_SCALE + 1):
                alpha = step / TEMPORAL_SCALE
                frames.append(torch.lerp(rgb[:, :, t - 1 : t], rgb[:, :, t : t + 1], alpha))
        video = torch.cat(frames, dim=2)
        video = video.repeat_interleave(SPATIAL_SCALE, dim=3).repeat_interleave(SPATIAL_SCALE, dim=4)
        return (0.5 + 0.15 * video).clamp(0.0, 1.0).movedim(1, -1)


class HVStandInTextEncoders:
    """Stand-in loader for DualCLIPLoader (CLIP-L + LLaVA-Llama3, type hunyuan_video); see the module doc."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"context_dim": ("INT", {"default": 32, "min": 1, "max": 8192})}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self, context_dim):
        return (StandInHunyuanTextEncoder(context_dim),)


class HVStandInVideoVAE:
    """Stand-in loader for VAELoader (HunyuanVideo 3D VAE); see the module doc."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1})}}

    RETURN_TYPES = ("VAE",)
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self, seed):
        return (StandInHunyuanVideoVAE(seed),)


NODE_CLASS_MAPPINGS = {"HVStandInTextEncoders": HVStandInTextEncoders, "HVStandInVideoVAE": HVStandInVideoVAE}
