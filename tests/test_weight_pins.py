"""The shipped weights.manifest against the bundled workflows: every file a workflow's loaders name is in the
manifest, and a model whose pins are published loads pinned files only (so setup's UNPINNED banner never shows
for it). Generic over workflows/: a workflow added later is covered without touching this file."""

from __future__ import annotations

import re

import pytest

from comfy_runtime.graph.workflow import available_workflows, load_workflow
from comfy_runtime.supply.manifest import load_manifest
from comfy_runtime.supply.weights import required_entries, unpinned_warning
from tests.support.paths import PROJECT_ROOT

WEIGHT_FILE = re.compile(r".+\.(safetensors|sft|ckpt|pt|pth|bin|gguf)$")
# Files whose size and sha256 are not published yet: each must also be listed as unpinned in the README's
# weights section. Empty today; the models issue adds HunyuanVideo 1.5's two unknown pins here.
# No pin for these could be had offline (docs/models.md): `weights lock` completes them with network.
PINS_NOT_PUBLISHED: set[str] = {
    "hunyuanvideo1.5_480p_t2v_fp16.safetensors",
    "hunyuanvideo1.5_480p_i2v_fp16.safetensors",
    "hunyuanvideo1.5_480p_i2v_step_distilled_fp16.safetensors",
    "hunyuan_video_image_to_video_720p_bf16.safetensors",
    "llava_llama3_vision.safetensors",
}
V1_REVISION = "5cb3dc3a3415d6589c8483a03e7ea98e96decb95"


def _loaded_files(graph: dict) -> set[str]:
    return {
        value for node in graph.values() if node.get("class_type", "").endswith(("Loader", "LoaderSimple"))
        for value in node.get("inputs", {}).values() if isinstance(value, str) and WEIGHT_FILE.fullmatch(value)
    }


@pytest.mark.parametrize("name", available_workflows())
def test_every_weight_a_workflow_loads_is_in_the_manifest(name):
    graph = load_workflow(name).graph
    listed = {entry.file for entry in required_entries(graph, load_manifest())}
    missing = _loaded_files(graph) - listed
    assert not missing, f"workflow {name} loads {sorted(missing)}, which weights.manifest does not list"


@pytest.mark.parametrize("name", available_workflows())
def test_a_model_with_published_pins_loads_no_unpinned_weight(name):
    entries = [e for e in required_entries(load_workflow(name).graph, load_manifest()) if e.file not in PINS_NOT_PUBLISHED]
    unpinned = [str(e.relative_path) for e in entries if not e.pinned]
    assert not unpinned, f"workflow {name} loads unpinned weights {unpinned}: pin them (size, sha256, hf_revision)"
    assert unpinned_warning(entries) is None  # the banner setup would print


def test_unpublished_pins_are_named_in_the_readme():
    readme = PROJECT_ROOT / "README.md"
    docs = [readme, *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
    text = "\n".join(path.read_text() for path in docs if path.is_file())
    for file in PINS_NOT_PUBLISHED:
        assert file in text, f"{file} has no published pin: say so in the weights documentation"


def test_hunyuan_video_v1_is_pinned_to_the_published_commit_and_lfs_pointers():
    t2v = {"hunyuan_video_t2v_720p_bf16.safetensors", "clip_l.safetensors", "llava_llama3_fp8_scaled.safetensors",
           "hunyuan_video_vae_bf16.safetensors"}
    # The same repo's image-to-video files have no published pin yet (PINS_NOT_PUBLISHED): the four t2v ones do.
    v1 = {e.file: e for e in load_manifest() if e.hf_repo == "Comfy-Org/HunyuanVideo_repackaged" and e.file in t2v}
    assert set(v1) == t2v
    assert {e.hf_revision for e in v1.values()} == {V1_REVISION}
    assert all(re.fullmatch(r"[0-9a-f]{64}", e.sha256) and e.size > 0 for e in v1.values())
    # the VAE name exists with other bytes in another repo: this pin is the repackaged one's
    assert v1["hunyuan_video_vae_bf16.safetensors"].sha256.startswith("e8f85532")
    header = re.split(r"(?m)^\[\[weight\]\]", (PROJECT_ROOT / "weights.manifest").read_text())[0]
    assert f"HunyuanVideo_repackaged at commit\n# {V1_REVISION}" in header  # the source is cited
