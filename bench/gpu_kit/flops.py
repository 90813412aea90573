"""FLOPs of one HunyuanVideo DiT forward, derived from the architecture's own weight shapes.

Every matrix weight of the model (ComfyUI's class, built on the meta device) is a Linear (or the patch
embedding's strided Conv3d, which is a Linear on each patch): it costs 2 x (its number of elements) FLOPs
per token it is applied to. Which tokens that is follows from where the weight sits (TOKEN_RULES): the image
stream, the text stream, both (single blocks), the text refiner, or the conditioning vector (once per
sample). Attention adds 4 x L^2 x hidden per joint block (QK^T and AV, each 2 x L^2 x hidden over all heads),
with L = image + text tokens, and the same over the text tokens in each refiner block. Elementwise work
(norms, RoPE, activations, modulation) is left out: it is well under 1% at full size. A weight that matches
no rule is an error, so a new architecture cannot be miscounted silently. tests/test_gpu_kit.py checks the
count against torch.utils.flop_counter on a real forward of the tiny DiT.

MFU = FLOPs per step / seconds per step / the GPU's dense bf16 peak (`PEAK_BF16_DENSE`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# (pattern on the weight name, which tokens it is applied to); first match wins.
TOKEN_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), which) for p, which in [
        (r"^cond_type_embedding\.", "none"),  # an embedding lookup, no multiply
        (r"(^|\.)(img_mod|txt_mod|modulation|adaLN_modulation)\.", "vector"),
        (r"^(time_in|time_r_in|vector_in|guidance_in)\.", "vector"),
        (r"^txt_in\.(t_embedder|c_embedder)\.", "vector"),  # timestep and pooled text: one vector per sample
        (r"^img_in\.", "image"),
        (r"^double_blocks\.\d+\.img_", "image"),
        (r"^double_blocks\.\d+\.txt_", "text"),
        (r"^single_blocks\.\d+\.", "joint"),
        (r"^txt_in\.", "llm_text"),  # the token refiner runs on the language model's tokens only
        (r"^byt5_in\.", "byt5"),
        (r"^vision_in\.", "vision"),
        (r"^final_layer\.linear\.", "image"),
    ]
]

# Dense (no sparsity) bf16 tensor-core peak, FLOP/s, from the vendors' data sheets (SXM parts).
PEAK_BF16_DENSE = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "B200": 2250e12, "A100": 312e12, "L40S": 362e12}


@dataclass(frozen=True)
class Tokens:
    image: int
    llm_text: int
    byt5: int = 0
    vision: int = 0

    @property
    def text(self) -> int:
        return self.llm_text + self.byt5 + self.vision

    @property
    def joint(self) -> int:
        return self.image + self.text


def image_tokens(latent_shape: tuple[int, ...], patch_size: list[int]) -> int:
    """(t, h, w) latent -> tokens after the patch embedding."""
    count = 1
    for size, patch in zip(latent_shape, patch_size, strict=True):
        count *= size // patch
    return count


def forward_flops(shapes: dict[str, tuple[int, ...]], hidden: int, tokens: Tokens, batch: int = 1) -> float:
    """FLOPs of one forward of the DiT whose weights have these shapes, on `batch` samples."""
    per_token = {"none": 0, "vector": 1, "image": tokens.image, "text": tokens.text, "joint": tokens.joint,
                 "llm_text": tokens.llm_text, "byt5": tokens.byt5, "vision": tokens.vision}
    flops = 0.0
    joint_blocks: set[str] = set()
    refiner_blocks: set[str] = set()
    for name, shape in shapes.items():
        if match := re.match(r"^(double_blocks|single_blocks)\.(\d+)\.", name):
            joint_blocks.add(match[0])
        if match := re.match(r"^txt_in\.individual_token_refiner\.blocks\.(\d+)\.", name):
            refiner_blocks.add(match[0])
        if len(shape) < 2:
            continue
        which = next((w for pattern, w in TOKEN_RULES if pattern.search(name)), None)
        if which is None:
            raise ValueError(f"no FLOP rule for weight {name} {shape}: add one to bench/gpu_kit/flops.py TOKEN_RULES")
        elements = 1
        for size in shape:
            elements *= size
        flops += 2.0 * elements * per_token[which]
    flops += len(joint_blocks) * 4.0 * tokens.joint**2 * hidden
    flops += len(refiner_blocks) * 4.0 * tokens.llm_text**2 * hidden
    return flops * batch


def peak_bf16(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU named like torch reports it ("NVIDIA H200"), None when unknown (no MFU)."""
    for model, peak in PEAK_BF16_DENSE.items():
        if re.search(rf"\b{model}\b", device_name):
            return peak
    return None
