"""What the kit measures: one row per model family. Switch a family on by filling in its row.

Each row names the bundled workflow it renders through the product's renderer, the DiT config at each scale
(ComfyUI's own argument names; the kit builds the DiT with them and checks that ComfyUI's detection reads
the same values back and picks `detected_as`), the VAE (by the weight keys ComfyUI's VAE detection keys on;
its architecture follows from them), the text-encoder stand-in with the real output width, and the
reference sizes.

HunyuanVideo 1.5 (480p and 720p: separate checkpoints and workflows, one architecture) renders through its
bundled workflows (hunyuan15_480p_t2v, hunyuan15_720p_t2v) with the Qwen2.5-VL + byT5 stand-in
(HVStandIn15TextEncoders) and the 1.5 VAE stand-in; its DiT and VAE configs are checked against ComfyUI's
detection by tests/test_gpu_kit.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bench.gpu_kit.models import TINY_CONTEXT_DIM, TINY_DIT_CONFIG

Scale = Literal["tiny", "full"]

# HunyuanVideo 13B (tencent/HunyuanVideo, the 720p t2v checkpoint ComfyUI repackages).
V1_FULL: dict[str, Any] = dict(
    image_model="hunyuan_video", hidden_size=3072, num_heads=24, depth=20, depth_single_blocks=40,
    axes_dim=[16, 56, 56], patch_size=[1, 2, 2], in_channels=16, out_channels=16, context_in_dim=4096,
    vec_in_dim=768, guidance_embed=True, qkv_bias=True, theta=256, mlp_ratio=4.0, byt5=False, meanflow=False,
    use_cond_type_embedding=False, vision_in_dim=None,
)
# HunyuanVideo 1.5 8.3B: 54 double blocks, no single ones; 32-channel latents + 32 conditioning + 1 mask in.
V15_FULL: dict[str, Any] = dict(
    image_model="hunyuan_video", hidden_size=2048, num_heads=16, depth=54, depth_single_blocks=0,
    axes_dim=[16, 56, 56], patch_size=[1, 1, 1], in_channels=65, out_channels=32, context_in_dim=3584,
    vec_in_dim=None, guidance_embed=False, qkv_bias=True, theta=256, mlp_ratio=4.0, byt5=True, meanflow=False,
    use_cond_type_embedding=True, vision_in_dim=1152,  # 1152 wide, or ComfyUI takes it for HunyuanImage 2.1's refiner
)
V15_TINY: dict[str, Any] = dict(
    V15_FULL, hidden_size=128, num_heads=1, depth=1, context_in_dim=TINY_CONTEXT_DIM,
)

# The VAEs: ComfyUI's VAE class picks the architecture from these keys' presence and shapes.
V1_VAE_KEYS = {"decoder.conv_in.conv.weight": (512, 16, 3, 3, 3), "post_quant_conv.weight": (16, 16, 1, 1, 1)}
V15_VAE_KEYS = {"decoder.conv_in.conv.weight": (1024, 32, 3, 3, 3)}


@dataclass(frozen=True)
class Size:
    width: int
    height: int
    num_frames: int

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}x{self.num_frames}"


@dataclass(frozen=True)
class Family:
    name: str
    label: str
    workflow: str | None  # a bundled workflow (workflows/<name>.json); None: not there yet
    dit: dict[Scale, dict[str, Any]]
    detected_as: str  # ComfyUI's supported_models class the DiT file must be detected as
    vae_keys: dict[str, tuple[int, ...]]
    text_stand_in: dict[Scale, tuple[str, dict[str, Any]]]  # node class, inputs
    vae_stand_in: tuple[str, dict[str, Any]]  # the VAE at tiny scale (the real one at full)
    sizes: dict[Scale, list[Size]]
    spatial_compression: int = 8  # the VAE's: latent = 1 + (frames - 1) / 4 frames of (height/s, width/s)
    dit_dtype: dict[Scale, str] = field(default_factory=lambda: {"tiny": "float32", "full": "bfloat16"})
    # Model passes per sampling step: 1 with embedded guidance (v1), 2 with real CFG (1.5: cond + uncond).
    passes_per_step: int = 1
    enabled: bool = True
    why_off: str = ""

    def dit_file(self, scale: Scale) -> str:
        return f"gpukit_{self.name}_{scale}_dit.safetensors"

    def vae_file(self) -> str:
        return f"gpukit_{self.name}_vae.safetensors"


def _hunyuan15(resolution: str, size: Size) -> Family:
    return Family(
        name=f"hunyuan_video_15_{resolution}",
        label=f"HunyuanVideo 1.5 8.3B t2v {resolution}",
        workflow=f"hunyuan15_{resolution}_t2v",
        dit={"tiny": V15_TINY, "full": V15_FULL},
        detected_as="HunyuanVideo15",
        vae_keys=V15_VAE_KEYS,
        text_stand_in={"tiny": ("HVStandIn15TextEncoders", {"context_dim": TINY_CONTEXT_DIM}),
                       "full": ("HVStandIn15TextEncoders", {"context_dim": 3584})},
        vae_stand_in=("HVStandIn15VideoVAE", {"seed": 0}),
        sizes={"tiny": [Size(64, 64, 5)], "full": [size]},
        spatial_compression=16,
        passes_per_step=2,
    )


FAMILIES: list[Family] = [
    Family(
        name="hunyuan_video",
        label="HunyuanVideo 13B t2v",
        workflow="hunyuan_t2v",
        dit={"tiny": TINY_DIT_CONFIG, "full": V1_FULL},
        detected_as="HunyuanVideo",
        vae_keys=V1_VAE_KEYS,
        text_stand_in={"tiny": ("HVStandInTextEncoders", {"context_dim": TINY_CONTEXT_DIM}),
                       "full": ("HVStandInTextEncoders", {"context_dim": 4096})},
        vae_stand_in=("HVStandInVideoVAE", {"seed": 0}),
        sizes={"tiny": [Size(64, 64, 5)], "full": [Size(848, 480, 73)]},
    ),
    _hunyuan15("480p", Size(848, 480, 121)),
    _hunyuan15("720p", Size(1280, 720, 121)),
]

# Speed features measured as ratios against the plain render of a family's first size. Each is a graph edit
# (bench/gpu_kit/measure.py variant_graph); `gpu_only` ones are validated but not run on a CPU.
FEATURES = {  # in the order they run: fp8 last, since its loader change drops the bf16 DiT from ComfyUI's cache
    "easycache": "EasyCache node between the flow shift and the guider, ComfyUI's default threshold (0.2)",
    "compile": "TorchCompileModel (inductor) on the DiT; the first render's extra time is the compile time",
    "fp8": "UNETLoader weight_dtype fp8_e4m3fn_fast on a GPU (fp8 matmuls), fp8_e4m3fn on a CPU",
    # HunyuanVideo 1.5 step-distilled (hunyuan15_480p_i2v_step_distilled): its published settings, 8 steps, cfg 1
    # (one model pass a step instead of CFG's two), shift 7, on the family's own graph and DiT. The distilled DiT
    # differs only by time_r_in (one 256->hidden MLP, a negligible share of a step) and its image conditioning,
    # which 1.5's t2v graph carries too (65 input channels): the render's time is the step-distilled one's.
    "step_distilled": "8 steps at cfg 1, shift 7 (the step-distilled model's settings) vs the family's 50-step render",
}
# Families the step-distilled row applies to (real CFG, a step-distilled checkpoint published).
STEP_DISTILLED_FAMILIES = {"hunyuan_video_15_480p", "hunyuan_video_15_720p"}
STEP_DISTILLED_REQUEST = {"steps": 8, "guidance": 1.0, "flow_shift": 7.0}
# HV_ATTENTION kernels the kit compares (comfy_runtime/backends/attention.py); sdpa is the main run's.
ATTENTION = ("sdpa", "sage")
GPU_ONLY_FEATURES = {"compile"}  # inductor on a CPU takes minutes of C++ compiling: validated, not run, at tiny


def by_name(name: str) -> Family:
    for family in FAMILIES:
        if family.name == name:
            return family
    raise KeyError(f"no family {name!r} in bench/gpu_kit/families.py; known: {[f.name for f in FAMILIES]}")
