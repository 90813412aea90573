"""A tiny HunyuanVideo DiT and the test graph derived from the production workflow.

The DiT is the real ComfyUI model class (comfy.ldm.hunyuan_video.model.HunyuanVideo) at hidden size 128
with one double and one single block; ComfyUI detects it from its weight shapes like the 13B one. Its config
and builder live in bench/gpu_kit/models.py (the GPU kit builds the 13B one the same way); re-exported here.
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

from bench.gpu_kit.models import TINY_CONTEXT_DIM, TINY_DIT_CONFIG, write_dit, write_random_weights, write_tiny_dit
from comfy_runtime.graph.types import Graph
from comfy_runtime.graph.workflow import WORKFLOWS_DIR

TINY_DIT_NAME = "tiny_hunyuan_video_dit.safetensors"
CONTEXT_DIM = TINY_CONTEXT_DIM
# Loader class in the production graph -> the stand-in that replaces it, with its inputs.
STAND_INS: dict[str, tuple[str, dict]] = {
    "DualCLIPLoader": ("HVStandInTextEncoders", {"context_dim": CONTEXT_DIM}),
    "VAELoader": ("HVStandInVideoVAE", {"seed": 0}),
}
__all__ = ["CONTEXT_DIM", "STAND_INS", "TINY_DIT_CONFIG", "TINY_DIT_NAME", "derive_tiny_graph", "write_dit",
           "write_random_weights", "write_tiny_dit", "write_tiny_workflows"]


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
