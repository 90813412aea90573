"""A tiny HunyuanVideo DiT and the test graph derived from the production workflow.

The DiT is the real ComfyUI model class (comfy.ldm.hunyuan_video.model.HunyuanVideo) at hidden size 128
with one double and one single block; ComfyUI detects it from its weight shapes like the 13B one.
The test graph is workflows/hunyuan_t2v.json with only the loaders that cannot run on a CPU swapped for
the stand-ins in tests/fixture_custom_nodes/hv_test_nodes/model_stand_ins.py, and the UNETLoader pointed
at the tiny DiT; the bindings file is copied unchanged. Both are built from the bundled files each
session, so a change to the product graph reaches these tests.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

from comfy_runtime.graph.types import Graph
from comfy_runtime.graph.workflow import WORKFLOWS_DIR

TINY_DIT_NAME = "tiny_hunyuan_video_dit.safetensors"
CONTEXT_DIM = 32
# The DiT's own arguments, as ComfyUI's model detection reads them back from the shapes.
TINY_DIT_CONFIG = dict(
    image_model="hunyuan_video", hidden_size=128, num_heads=1, depth=1, depth_single_blocks=1,
    axes_dim=[16, 56, 56], patch_size=[1, 2, 2], in_channels=16, out_channels=16, context_in_dim=CONTEXT_DIM,
    vec_in_dim=768,  # vector_in present: without it ComfyUI takes the file for HunyuanImage 2.1
    guidance_embed=True, qkv_bias=True, theta=256, mlp_ratio=4.0, byt5=False, meanflow=False,
    use_cond_type_embedding=False, vision_in_dim=None,
)
# Loader class in the production graph -> the stand-in that replaces it, with its inputs.
STAND_INS: dict[str, tuple[str, dict]] = {
    "DualCLIPLoader": ("HVStandInTextEncoders", {"context_dim": CONTEXT_DIM}),
    "VAELoader": ("HVStandInVideoVAE", {"seed": 0}),
}


def write_tiny_dit(path: Path, seed: int = 0) -> Path:
    """Seeded random weights for the tiny DiT, saved as safetensors. ComfyUI must be importable (booted)."""
    return write_dit(path, TINY_DIT_CONFIG, seed)


def write_dit(path: Path, config: dict, seed: int = 0) -> Path:
    """A HunyuanVideo-family DiT (ComfyUI's own class) of `config` with seeded random weights, as safetensors.
    The same function builds the tiny test DiTs and, with a full-size config, a GPU benchmark's random model."""
    import comfy.ops
    from comfy.ldm.hunyuan_video.model import HunyuanVideo

    model = HunyuanVideo(operations=comfy.ops.disable_weight_init, **config)
    return write_random_weights(model, path, seed)


def write_random_weights(model, path: Path, seed: int = 0) -> Path:
    """Seeded random weights for every tensor of `model`, saved as safetensors."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, param in model.state_dict().items():
        if param.ndim >= 2:
            # 1/sqrt(fan_in) keeps activations near unit scale, so text, guidance and timestep all move the output.
            weights[name] = torch.randn(param.shape, generator=generator) / param[0].numel() ** 0.5
        else:
            base = 1.0 if name.endswith(".weight") else 0.0  # norm scales near 1, biases near 0
            weights[name] = base + 0.1 * torch.randn(param.shape, generator=generator)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in weights.items()}, str(path))
    return path


def derive_tiny_graph(production: Graph, dit_name: str = TINY_DIT_NAME) -> Graph:
    """The production graph with only its CPU-impossible loaders replaced and the DiT loader re-pointed."""
    graph = copy.deepcopy(production)
    found = {cls: [nid for nid, node in graph.items() if node["class_type"] == cls] for cls in (*STAND_INS, "UNETLoader")}
    for cls, node_ids in found.items():
        if len(node_ids) != 1:
            raise AssertionError(
                f"the production graph has {len(node_ids)} {cls} nodes; the tiny-DiT derivation expects exactly one "
                "(update tests/support/tiny_hunyuan.py STAND_INS to match the new graph)"
            )
    for cls, (stand_in, inputs) in STAND_INS.items():
        node = graph[found[cls][0]]
        node["class_type"] = stand_in
        node["inputs"] = dict(inputs)
        node.setdefault("_meta", {})["title"] = f"stand-in for {cls}"
    graph[found["UNETLoader"][0]]["inputs"]["unet_name"] = dit_name
    return graph


def write_tiny_workflows(target: Path, name: str = "hunyuan_t2v", source: Path = WORKFLOWS_DIR) -> Path:
    """A workflows folder (for HV_WORKFLOWS_DIR) with the derived graph and the production bindings, and its
    sibling workflows (image-to-video) derived by tests/tiny_hunyuan15.py."""
    from tests.support.tiny_hunyuan15 import write_tiny_family

    write_tiny_family(target, name, source)
    production = json.loads((source / f"{name}.json").read_text())
    (target / f"{name}.json").write_text(json.dumps(derive_tiny_graph(production), indent=2))
    shutil.copyfile(source / f"{name}.bindings.toml", target / f"{name}.bindings.toml")
    return target
