"""Tiny real DiTs for the whole HunyuanVideo family, and the test graphs derived from the bundled workflows.

Every builder takes its config, so a GPU benchmark can build the same architectures at full size with
seeded random weights (write_dit(path, FULL_CONFIG) from bench/gpu_kit/models.py). ComfyUI detects each file
by its weight shapes, as it does the real ones:
- HunyuanVideo 1.5 (t2v and i2v share the architecture: 65 input channels = 32 noise + 32 image + 1 mask):
  vision_in must stay 1152 wide, or ComfyUI takes the file for HunyuanImage 2.1's refiner.
- HunyuanVideo 1.5 1080p super-resolution DiT: 98 input channels.
- HunyuanVideo 1.5 step-distilled (meanflow): the 1.5 DiT with time_r_in.
- HunyuanVideo v1 image-to-video: 33 input channels (16 + 16 + 1).
- The 1080p latent upsampler: ComfyUI's Upsampler class (the real file's), 32 channels wide.
A test graph is a bundled workflow with only its CPU-impossible loaders (text encoders, vision encoders,
the VAE) swapped for the stand-ins in tests/fixture_custom_nodes/hv_test_nodes/model_stand_ins.py and the
model loaders pointed at the tiny files; its bindings file is copied unchanged.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

from comfy_runtime.graph.types import Graph
from comfy_runtime.graph.workflow import WORKFLOWS_DIR, load_workflow
from tests.support.tiny_hunyuan import CONTEXT_DIM, TINY_DIT_CONFIG, TINY_DIT_NAME, write_dit, write_random_weights

TINY_DIT15_CONFIG = dict(
    image_model="hunyuan_video", hidden_size=128, num_heads=1, depth=1, depth_single_blocks=0,
    axes_dim=[16, 56, 56], patch_size=[1, 1, 1], in_channels=65, out_channels=32, context_in_dim=CONTEXT_DIM,
    vec_in_dim=None, guidance_embed=False, qkv_bias=True, theta=256, mlp_ratio=4.0, byt5=True, meanflow=False,
    use_cond_type_embedding=True, vision_in_dim=1152,
)
TINY_SR_DIT_CONFIG = {**TINY_DIT15_CONFIG, "in_channels": 98}
# The step-distilled 1.5 DiTs are meanflow models: time_r_in embeds the next sigma (the patched rule sums the two).
TINY_DIT15_MEANFLOW_CONFIG = {**TINY_DIT15_CONFIG, "meanflow": True}
TINY_V1_I2V_CONFIG = {**TINY_DIT_CONFIG, "in_channels": 33}
TINY_UPSAMPLER_CONFIG = dict(z_channels=32, out_channels=32, block_out_channels=(32,))

# Production file -> (tiny file, builder config, seed). Distinct seeds: t2v and i2v DiTs are different models.
TINY_DITS = {
    "hunyuan_video_t2v_720p_bf16.safetensors": (TINY_DIT_NAME, TINY_DIT_CONFIG, 0),
    "hunyuan_video_image_to_video_720p_bf16.safetensors": ("tiny_hunyuan_video_i2v_dit.safetensors", TINY_V1_I2V_CONFIG, 3),
    "hunyuanvideo1.5_720p_t2v_fp16.safetensors": ("tiny_hv15_t2v_dit.safetensors", TINY_DIT15_CONFIG, 1),
    "hunyuanvideo1.5_720p_i2v_fp16.safetensors": ("tiny_hv15_i2v_dit.safetensors", TINY_DIT15_CONFIG, 2),
    "hunyuanvideo1.5_480p_t2v_fp16.safetensors": ("tiny_hv15_t2v_dit.safetensors", TINY_DIT15_CONFIG, 1),
    "hunyuanvideo1.5_480p_i2v_fp16.safetensors": ("tiny_hv15_i2v_dit.safetensors", TINY_DIT15_CONFIG, 2),
    "hunyuanvideo1.5_480p_t2v_cfg_distilled_fp16.safetensors": ("tiny_hv15_t2v_dit.safetensors", TINY_DIT15_CONFIG, 1),
    "hunyuanvideo1.5_1080p_sr_distilled_fp16.safetensors": ("tiny_hv15_sr_dit.safetensors", TINY_SR_DIT_CONFIG, 4),
    "hunyuanvideo1.5_480p_i2v_step_distilled_fp16.safetensors": ("tiny_hv15_i2v_meanflow_dit.safetensors",
                                                                 TINY_DIT15_MEANFLOW_CONFIG, 6),
}
TINY_UPSAMPLERS = {"hunyuanvideo15_latent_upsampler_1080p.safetensors": ("tiny_hv15_upsampler.safetensors", 5)}
VISION_KIND = {"sigclip_vision_patch14_384.safetensors": "sigclip", "llava_llama3_vision.safetensors": "llava"}


def write_latent_upsampler(path: Path, config: dict = TINY_UPSAMPLER_CONFIG, seed: int = 0) -> Path:
    """The 1080p latent upsampler (ComfyUI's Upsampler, what LatentUpscaleModelLoader builds for the real file)."""
    from comfy.ldm.hunyuan_video.upsampler import Upsampler

    return write_random_weights(Upsampler(**config), path, seed)


def write_tiny_models(models_dir: Path) -> dict[str, Path]:
    """Every tiny DiT and upsampler under models_dir (diffusion_models/, latent_upscale_models/)."""
    written: dict[str, Path] = {}
    for tiny, config, seed in TINY_DITS.values():
        if tiny not in written:
            written[tiny] = write_dit(models_dir / "diffusion_models" / tiny, config, seed)
    for tiny, seed in TINY_UPSAMPLERS.values():
        written[tiny] = write_latent_upsampler(models_dir / "latent_upscale_models" / tiny, seed=seed)
    return written


def stand_in_for(node: dict) -> tuple[str, dict] | None:
    """The stand-in loader (class, inputs) for a loader that cannot run on CPU, or None."""
    cls, inputs = node["class_type"], node["inputs"]
    if cls == "DualCLIPLoader":
        stand_in = "HVStandIn15TextEncoders" if inputs["type"] == "hunyuan_video_15" else "HVStandInTextEncoders"
        return stand_in, {"context_dim": CONTEXT_DIM}
    if cls == "VAELoader":
        return ("HVStandIn15VideoVAE" if "15" in inputs["vae_name"] else "HVStandInVideoVAE"), {"seed": 0}
    if cls == "CLIPVisionLoader":
        return "HVStandInVisionEncoder", {"kind": VISION_KIND[inputs["clip_name"]]}
    return None


def derive_tiny_graph(production: Graph, keep_vae: bool = False) -> Graph:
    """The production graph with its CPU-impossible loaders replaced and its model loaders re-pointed."""
    graph = copy.deepcopy(production)
    for node in graph.values():
        cls = node["class_type"]
        if cls == "UNETLoader":
            node["inputs"]["unet_name"] = TINY_DITS[node["inputs"]["unet_name"]][0]
        elif cls == "LatentUpscaleModelLoader":
            node["inputs"]["model_name"] = TINY_UPSAMPLERS[node["inputs"]["model_name"]][0]
        elif cls == "VAELoader" and keep_vae:
            continue
        else:
            replacement = stand_in_for(node)
            if replacement:
                node["class_type"], node["inputs"] = replacement[0], dict(replacement[1])
                node.setdefault("_meta", {})["title"] = f"stand-in for {cls}"
    return graph


def write_tiny_family(target: Path, name: str, source: Path = WORKFLOWS_DIR) -> Path:
    """A workflows folder (for HV_WORKFLOWS_DIR) with the derived graph of `name` and of every sibling workflow
    its [model] table names (image-to-video, upscale), each with its production bindings."""
    target.mkdir(parents=True, exist_ok=True)
    for workflow in load_workflow(name, source).family():
        production = json.loads((source / f"{workflow.name}.json").read_text())
        (target / f"{workflow.name}.json").write_text(json.dumps(derive_tiny_graph(production), indent=2))
        shutil.copyfile(source / f"{workflow.name}.bindings.toml", target / f"{workflow.name}.bindings.toml")
    return target


def write_vae15(path: Path, seed: int = 0) -> Path:
    """The HunyuanVideo 1.5 VAE at its real architecture (ComfyUI fixes it: 1.26 B params) with seeded random
    weights, saved as fp16 safetensors (2.5 GB, as the real file) for the real VAELoader. CPU: ~8-10 s per
    encode/decode at 64x64x9, so the suite uses it once."""
    import gc

    import comfy.sd
    import torch
    from safetensors.torch import save_file

    # The one key ComfyUI detects the 1.5 VAE by (32 latent channels into a 3D conv); every weight is set below.
    vae = comfy.sd.VAE(sd={"decoder.conv_in.conv.weight": torch.zeros(1024, 32, 3, 3, 3)})
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, param in vae.first_stage_model.state_dict().items():
        if param.ndim >= 2:
            tensor = torch.randn(param.shape, generator=generator) / param[0].numel() ** 0.5
        else:
            tensor = (1.0 if name.endswith(".weight") else 0.0) + 0.1 * torch.randn(param.shape, generator=generator)
        weights[name] = tensor.to(torch.float16).contiguous()
    del vae
    gc.collect()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(path))
    return path


# A tiny 1.5 render through the Predictor: the test suites lay their inputs over this.
BASE15 = dict(prompt="a red fox running through fresh snow", width=64, height=64, num_frames=5, steps=2, guidance=6.0,
            flow_shift=7.0, fps=24, seed=1234)


def slow_model(target: Path, name: str, seconds_per_call: float) -> Path:
    """In the derived graph `name` under target, the fixture node HVTestSlowModel between UNETLoader and the model's
    next node: the real sampler, each model call slowed, so a test can watch (and cancel) a render for as long as
    it needs."""
    path = target / f"{name}.json"
    graph = json.loads(path.read_text())
    (loader,) = [node_id for node_id, node in graph.items() if node["class_type"] == "UNETLoader"]
    for node in graph.values():
        for key, value in node["inputs"].items():
            if value == [loader, 0]:
                node["inputs"][key] = ["hv_slow_model", 0]
    graph["hv_slow_model"] = {"class_type": "HVTestSlowModel",
                              "inputs": {"model": [loader, 0], "seconds_per_call": seconds_per_call}}
    path.write_text(json.dumps(graph, indent=2))
    return target
