"""Stand-ins for the HunyuanVideo parts that cannot run on a CPU, as ComfyUI nodes (benchmarks and tests).

The GPU kit (bench/gpu_kit) replaces the text-encoder loader with a stand-in at the real width (4096 for
LLaVA-Llama3, 3584 for Qwen2.5-VL): a language model runs once per job, and its cost is not what the kit
measures. The tiny-DiT tests (tests/test_tiny_dit.py) replace only the *loader* nodes of the bundled workflows
with these. The nodes that use what they load stay the production ones: the real CLIPTextEncode calls
the stand-in encoder's tokenize()/encode_from_tokens_scheduled(), and the real VAEDecodeTiled (with the
production tile settings) calls the stand-in VAE's decode_tiled().

- HVStandInTextEncoders stands in for DualCLIPLoader(clip_l + llava_llama3_fp8_scaled, type hunyuan_video):
  the 8B LLaVA-Llama3 has a fixed config and cannot run on a CPU.
- HVStandInVideoVAE stands in for VAELoader(hunyuan_video_vae_bf16): its config is fixed by ComfyUI
  (128 base channels, 3D convs), far too slow on CPU for the many renders the tests make.
- HVStandIn15TextEncoders stands in for DualCLIPLoader(qwen_2.5_vl_7b_fp8_scaled + byt5_small_glyphxl,
  type hunyuan_video_15): per-token states, no pooled output, and byT5 glyph states [1, M, 1472] only when
  the prompt has quoted text, as the real encoder gives.
- HVStandIn15VideoVAE stands in for VAELoader(hunyuanvideo15_vae_fp16): 32 latent channels, 16x spatial,
  4x temporal, with an encoder (image-to-video encodes the start frame). The real architecture (1.26 B
  params, ~8-10 s per CPU encode/decode) runs once in the suite (tests/test_hunyuan15.py).
- HVStandInVisionEncoder stands in for CLIPVisionLoader(sigclip_vision_patch14_384 / llava_llama3_vision):
  per-patch states computed from the image, shaped like the real encoders' outputs.
"""

from __future__ import annotations

import hashlib
import re

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


class StandInHunyuanVideoVAE:
    """Stand-in for ComfyUI's VAE object (HunyuanVideo 3D VAE): a fixed linear latent-to-RGB map with the
    real VAE's shapes (16 channels -> RGB, x8 spatial, T -> 1 + 4*(T-1) frames) so frame counts and sizes
    match what the real decoder gives, and every latent change shows in the pixels."""

    def __init__(self, seed: int):
        self.to_rgb = _seeded(f"vae:{seed}", 3, LATENT_CHANNELS) / LATENT_CHANNELS**0.5
        self.from_rgb = _seeded(f"vae-encode:{seed}", LATENT_CHANNELS, 3)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(F, H, W, 3) images in [0, 1] -> (1, 16, 1 + (F-1)//4, H/8, W/8) latents (image-to-video)."""
        return _encode(pixels, self.from_rgb, SPATIAL_SCALE)

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


BYT5_DIM = 1472  # byT5-small glyph encoder width, what the 1.5 DiT's byt5_in takes
LATENT15_CHANNELS = 32
SPATIAL15_SCALE = 16
_QUOTED = re.compile(r'"(.*?)"|\u2018(.*?)\u2019|\u201c(.*?)\u201d')


def _image_embedding(label: str, tokens: torch.Tensor, width: int) -> torch.Tensor:
    """(1, N, k) features -> (1, N, width) through a fixed seeded projection."""
    projection = _seeded(label, tokens.shape[-1], width) / tokens.shape[-1] ** 0.5
    return tokens.float() @ projection


class StandInHunyuanTextEncoder:
    """Stand-in for ComfyUI's CLIP object (clip_l + llava_llama3): deterministic embeddings from the text.

    Each word gets an embedding seeded by its hash (so prompts sharing words share token states), the
    pooled vector is seeded by the whole prompt. Same text, same conditioning, on every machine. Image-to-video
    (TextEncodeHunyuanVideo_ImageToVideo) hands the vision encoder's mm_projected states as image_embeds: like
    LLaVA, they become tokens of the sequence (every image_interleave-th one).
    """

    def __init__(self, context_dim: int):
        self.context_dim = context_dim

    def tokenize(self, text: str, image_embeds=None, image_interleave: int = 1, **_: object) -> list:
        tokens: list = ["<bos>", *text.split()]
        if image_embeds is not None:
            tokens.append(image_embeds[:, ::image_interleave])
        return tokens

    def encode_from_tokens_scheduled(self, tokens: list, unprojected=False, add_dict=None, show_pbar=True):
        words = [token for token in tokens if isinstance(token, str)]
        states = [_seeded(f"token:{token}", self.context_dim) for token in words]
        cond = torch.stack(states).unsqueeze(0)
        for image in (token for token in tokens if isinstance(token, torch.Tensor)):
            cond = torch.cat([cond, _image_embedding("llava-image", image, self.context_dim)], dim=1)
        pooled = _seeded("pooled:" + " ".join(words), 1, POOLED_DIM)
        return [[cond, {"pooled_output": pooled, **(add_dict or {})}]]


class StandInHunyuan15TextEncoder:
    """Stand-in for the 1.5 CLIP object (Qwen2.5-VL 7B + byT5-small glyph encoder)."""

    def __init__(self, context_dim: int):
        self.context_dim = context_dim

    def tokenize(self, text: str, **_: object) -> dict:
        quoted = ["".join(groups) for groups in _QUOTED.findall(text)]
        return {"qwen": ["<|im_start|>", *text.split()], "byt5": quoted}

    def encode_from_tokens_scheduled(self, tokens: dict, unprojected=False, add_dict=None, show_pbar=True):
        cond = torch.stack([_seeded(f"qwen:{token}", self.context_dim) for token in tokens["qwen"]]).unsqueeze(0)
        extra: dict = {"pooled_output": None}
        if tokens["byt5"]:
            glyphs = list("".join(f'Text "{text}". ' for text in tokens["byt5"]))
            extra["conditioning_byt5small"] = torch.stack([_seeded(f"byt5:{c}", BYT5_DIM) for c in glyphs]).unsqueeze(0)
        return [[cond, {**extra, **(add_dict or {})}]]


class StandInHunyuan15VideoVAE:
    """Stand-in for the 1.5 VAE object: fixed linear maps with the real VAE's shapes (32 channels, x16 spatial,
    T latent frames <-> 1 + 4*(T-1) frames), an encoder and a decoder, so what the DiT gets and gives shows."""

    def __init__(self, seed: int):
        self.to_rgb = _seeded(f"vae15:{seed}", 3, LATENT15_CHANNELS) / LATENT15_CHANNELS**0.5
        self.from_rgb = _seeded(f"vae15-encode:{seed}", LATENT15_CHANNELS, 3)

    def spacial_compression_decode(self) -> int:
        return SPATIAL15_SCALE

    def spacial_compression_encode(self) -> int:
        return SPATIAL15_SCALE

    def temporal_compression_decode(self) -> int:
        return TEMPORAL_SCALE

    def decode_tiled(self, samples, tile_x=None, tile_y=None, overlap=None, tile_t=None, overlap_t=None):
        return self.decode(samples)

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        if samples.ndim != 5 or samples.shape[1] != LATENT15_CHANNELS:
            raise ValueError(f"expected HunyuanVideo 1.5 latents (B, 32, T, h, w), got {tuple(samples.shape)}")
        rgb = torch.einsum("cl,blthw->bcthw", self.to_rgb, samples.float())
        frames = [rgb[:, :, :1]]
        for t in range(1, rgb.shape[2]):
            for step in range(1, TEMPORAL_SCALE + 1):
                frames.append(torch.lerp(rgb[:, :, t - 1 : t], rgb[:, :, t : t + 1], step / TEMPORAL_SCALE))
        video = torch.cat(frames, dim=2)
        video = video.repeat_interleave(SPATIAL15_SCALE, dim=3).repeat_interleave(SPATIAL15_SCALE, dim=4)
        return (0.5 + 0.15 * video).clamp(0.0, 1.0).movedim(1, -1)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(F, H, W, 3) images in [0, 1] -> (1, 32, 1 + (F-1)//4, H/16, W/16) latents."""
        return _encode(pixels, self.from_rgb, SPATIAL15_SCALE)


def _encode(pixels: torch.Tensor, from_rgb: torch.Tensor, spatial: int) -> torch.Tensor:
    """A causal video VAE's shapes: frame 0 alone, then each group of 4 frames, pooled spatial x spatial."""
    video = pixels[..., :3].float().movedim(-1, 0)  # 3, F, H, W
    pooled = torch.nn.functional.avg_pool2d(video, spatial)  # 3, F, h, w
    groups = [pooled[:, :1]] + [pooled[:, i : i + TEMPORAL_SCALE] for i in range(1, pooled.shape[1], TEMPORAL_SCALE)]
    latent = torch.cat([g.mean(dim=1, keepdim=True) for g in groups if g.shape[1]], dim=1)  # 3, T, h, w
    return torch.einsum("lc,cthw->lthw", from_rgb, latent * 2.0 - 1.0).unsqueeze(0)


class StandInVisionOutput:
    """What comfy.clip_vision.ClipVisionModel.encode_image returns (its attributes, not the dict behaviour)."""

    def __init__(self, **outputs: torch.Tensor):
        self.__dict__.update(outputs)

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.__dict__[key]


# Real shapes: SigLIP so400m patch14 at 384 px: 27x27 = 729 tokens of 1152; LLaVA-Llama3's vision tower (CLIP
# ViT-L/14 at 336 px): 24x24 = 576 patch tokens of 1024, projected to LLaMA's 4096 (mm_projected).
VISION_SHAPES = {"sigclip": (27, 1152, None), "llava": (24, 1024, 4096)}


class StandInVisionEncoder:
    def __init__(self, kind: str):
        self.kind = kind
        self.grid, self.width, self.projected = VISION_SHAPES[kind]

    def encode_image(self, image: torch.Tensor, crop: bool = True) -> StandInVisionOutput:
        pixels = image[..., :3].float().movedim(-1, 1)  # B, 3, H, W
        if crop:
            side = min(pixels.shape[-2:])
            top, left = (pixels.shape[-2] - side) // 2, (pixels.shape[-1] - side) // 2
            pixels = pixels[..., top : top + side, left : left + side]
        patches = torch.nn.functional.adaptive_avg_pool2d(pixels, self.grid).flatten(2).transpose(1, 2)  # B, N, 3
        states = _image_embedding(f"vision:{self.kind}", patches * 2.0 - 1.0, self.width)
        states = states + _seeded(f"vision-position:{self.kind}", 1, states.shape[1], self.width) * 0.1
        outputs = {"last_hidden_state": states, "penultimate_hidden_states": states, "image_embeds": states.mean(dim=1)}
        if self.projected:
            outputs["mm_projected"] = _image_embedding(f"vision-projector:{self.kind}", states, self.projected)
        return StandInVisionOutput(**outputs)


def _stand_in_loader(name: str, doc: str, returns: str, field: str, spec: tuple, make) -> type:
    """A ComfyUI loader node with one widget input whose load() hands on make(value)."""

    def load(self, **inputs):
        return (make(inputs[field]),)

    return type(name, (), {
        "__doc__": doc,
        "INPUT_TYPES": classmethod(lambda cls: {"required": {field: spec}}),
        "RETURN_TYPES": (returns,), "FUNCTION": "load", "CATEGORY": "testing", "load": load,
    })


_WIDTH = ("INT", {"default": 32, "min": 1, "max": 8192})  # as wide as the DiT's txt_in: up to 4096 and 3584 real
_SEED = ("INT", {"default": 0, "min": 0, "max": 2**31 - 1})
HVStandInTextEncoders = _stand_in_loader(
    "HVStandInTextEncoders", "Stand-in loader for DualCLIPLoader (CLIP-L + LLaVA-Llama3, type hunyuan_video).",
    "CLIP", "context_dim", _WIDTH, StandInHunyuanTextEncoder)
HVStandInVideoVAE = _stand_in_loader(
    "HVStandInVideoVAE", "Stand-in loader for VAELoader (HunyuanVideo 3D VAE).", "VAE", "seed", _SEED,
    StandInHunyuanVideoVAE)
HVStandIn15TextEncoders = _stand_in_loader(
    "HVStandIn15TextEncoders", "Stand-in loader for DualCLIPLoader (Qwen2.5-VL + byT5, type hunyuan_video_15).",
    "CLIP", "context_dim", _WIDTH, StandInHunyuan15TextEncoder)
HVStandIn15VideoVAE = _stand_in_loader(
    "HVStandIn15VideoVAE", "Stand-in loader for VAELoader (HunyuanVideo 1.5 VAE).", "VAE", "seed", _SEED,
    StandInHunyuan15VideoVAE)
HVStandInVisionEncoder = _stand_in_loader(
    "HVStandInVisionEncoder", "Stand-in loader for CLIPVisionLoader (SigLIP for 1.5, LLaVA-Llama3's vision tower for v1).",
    "CLIP_VISION", "kind", (list(VISION_SHAPES),), StandInVisionEncoder)


NODE_CLASS_MAPPINGS = {
    "HVStandInTextEncoders": HVStandInTextEncoders, "HVStandInVideoVAE": HVStandInVideoVAE,
    "HVStandIn15TextEncoders": HVStandIn15TextEncoders, "HVStandIn15VideoVAE": HVStandIn15VideoVAE,
    "HVStandInVisionEncoder": HVStandInVisionEncoder,
}
