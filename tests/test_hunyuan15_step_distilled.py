"""HunyuanVideo 1.5 480p step-distilled (image-to-video, 8 steps) with a tiny meanflow DiT (time_r_in), through the
real UNETLoader, sampler and Predictor, with the pinned ComfyUI patch (patches/comfyui/0001, upstream e2a800e7).

The patched rule is shown on ComfyUI's own modules: each tree (a patched and a pristine copy of the provisioned one:
the shared tree is never patched here) renders in a process of its own (tests/support/meanflow_probe.py), which
records what time_in and time_r_in returned and what the first block received. Renders are 64x64, 5 frames, 8 steps.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from comfy_runtime.graph.workflow import load_workflow
from comfy_runtime.render.model_choice import ModelCannotUse
from comfy_runtime.settings import PROJECT_ROOT
from tests.support import meanflow_probe
from tests.support.media import decode_frames
from tests.support.patched_comfyui import patched_copy, pristine_copy
from tests.support.predictor import booted_predictor
from tests.support.tiny_hunyuan15 import TINY_DITS, write_tiny_family, write_tiny_models
from tests.support.tiny_renders import mean_abs_diff

NAME = meanflow_probe.WORKFLOW
DIT = "hunyuanvideo1.5_480p_i2v_step_distilled_fp16.safetensors"


@pytest.fixture(scope="module")
def tiny_models(session_dirs, runtime) -> dict[str, Path]:
    return write_tiny_models(session_dirs["models"])


@pytest.fixture(scope="module")
def workflows_dir(tmp_path_factory) -> Path:
    return write_tiny_family(tmp_path_factory.mktemp("tiny-step-distilled"), NAME)


@pytest.fixture(scope="module")
def env(hv_env, tiny_models, workflows_dir) -> dict[str, str]:
    return {**hv_env, "HV_WORKFLOW": NAME, "HV_WORKFLOWS_DIR": str(workflows_dir)}


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("comfyui-trees")
    return {"patched": patched_copy(root / "patched"), "pristine": pristine_copy(root / "pristine", files_only=False)}


def _probe(env: dict[str, str], tree: Path, out: Path) -> dict[str, np.ndarray]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.meanflow_probe", str(out)], cwd=PROJECT_ROOT, capture_output=True,
        text=True, timeout=600, env={**os.environ, **env, "HV_COMFYUI_PATH": str(tree), "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(np.load(out))


@pytest.fixture(scope="module")
def probes(env, trees, tmp_path_factory) -> dict[str, dict[str, np.ndarray]]:
    out = tmp_path_factory.mktemp("probes")
    return {label: _probe(env, tree, out / f"{label}.npz") for label, tree in trees.items()}


def _embeddings(probe: dict[str, np.ndarray]):
    return [(probe[f"vec_t_{i}"], probe[f"vec_r_{i}"], probe[f"vec_{i}"]) for i in range(int(probe["calls"]))]


def test_the_step_distilled_workflow_is_the_480p_i2v_graph_with_its_dit_and_published_settings():
    distilled, base = load_workflow(NAME), load_workflow("hunyuan15_480p_i2v")
    assert set(distilled.graph) == set(base.graph)
    for node_id, node in base.graph.items():
        other = distilled.graph[node_id]
        changed = {k for k in node["inputs"] if node["inputs"][k] != other["inputs"][k]}
        expected = {"UNETLoader": {"unet_name"}, "CFGGuider": {"cfg"}, "BasicScheduler": {"steps"}}
        assert changed == expected.get(node["class_type"], set()), (node_id, changed)
    assert distilled.graph["10"]["inputs"]["unet_name"] == DIT
    assert distilled.takes_image and distilled.image_to_video is None
    assert {k: distilled.defaults[k] for k in ("steps", "flow_shift", "guidance")} == {"steps": 8, "flow_shift": 7.0,
                                                                                       "guidance": 1.0}
    assert "guidance" not in distilled.bindings and "negative_prompt" not in distilled.bindings
    assert distilled.minimums == {"steps": 8} and distilled.limits["steps"] == 12


def test_the_tiny_meanflow_dit_is_detected_as_hunyuan_video_15_with_time_r_in(tiny_models):
    import comfy.supported_models
    import nodes

    (model,) = nodes.NODE_CLASS_MAPPINGS["UNETLoader"]().load_unet(TINY_DITS[DIT][0], "default")
    assert type(model.model.model_config) is comfy.supported_models.HunyuanVideo15
    assert model.model.model_config.unet_config["meanflow"] is True
    assert model.model.diffusion_model.time_r_in is not None


def test_the_patched_tree_sums_the_time_embeddings_and_the_pristine_one_averages_them(probes):
    for label, probe in probes.items():
        calls = _embeddings(probe)
        assert len(calls) >= 8, f"{label}: {len(calls)} DiT calls for 8 steps"
        for vec_t, vec_r, vec in calls:
            summed, averaged = vec_t + vec_r, (vec_t + vec_r) / 2
            assert not np.allclose(summed, averaged, atol=1e-4)  # the two rules are told apart on these values
            expected = summed if label == "patched" else averaged
            np.testing.assert_allclose(vec, expected, rtol=1e-5, atol=1e-5, err_msg=label)
    difference = mean_abs_diff(probes["patched"]["frames_a"], probes["pristine"]["frames_a"])
    print(f"patched vs pristine rule, same request: mean abs pixel difference {difference:.1f}/255")
    assert difference > 0.5


def test_same_seed_same_frames_with_the_patch(probes):
    np.testing.assert_array_equal(probes["patched"]["frames_a"], probes["patched"]["frames_b"])


def test_a_start_image_is_required_and_steps_outside_8_to_12_are_refused_with_the_reason(env):
    predictor = booted_predictor(env)
    try:
        base = meanflow_probe.request()
        with pytest.raises(ModelCannotUse, match="image-to-video only: give image"):
            predictor.predict(**{k: v for k, v in base.items() if k != "image"})
        for steps, words in ((4, "steps at least 8"), (7, "steps at least 8"), (13, "steps at most 12")):
            with pytest.raises(ModelCannotUse, match=words) as error:
                predictor.predict(**base, steps=steps)
            assert "step-distilled for 8-12 steps" in str(error.value)
        with pytest.raises(ModelCannotUse, match="guidance=6.0"):
            predictor.predict(**base, guidance=6.0)
        with pytest.raises(ModelCannotUse, match="negative_prompt"):
            predictor.predict(**base, negative_prompt="blurry")
        assert len(decode_frames(predictor.predict(**base, steps=12))) == 5  # the top of the range renders
    finally:
        predictor.service.close()


@pytest.mark.cog_server
def test_through_the_real_cog_server_with_the_patched_tree(env, trees, probes, tmp_path):
    from comfy_runtime.cog_schema import write_schema
    from local_servers.cog_server import CogServer
    from tests.support.media import write_data_uri

    server_env = {**env, "HV_COMFYUI_PATH": str(trees["patched"])}
    with pytest.MonkeyPatch.context() as patch:  # coglet validates against the schema of the model it serves
        for name, value in server_env.items():
            patch.setenv(name, value)
        write_schema()
    try:
        with CogServer(server_env, tmp_path / "server.log") as server:
            body, _ = server.wait_for_status({"READY", "SETUP_FAILED"})
            assert body["status"] == "READY", server.logs()
            response = server.predict(meanflow_probe.request())
            assert response.status_code == 200, response.text
            result = response.json()
            server.wait_for_status({"READY"}, timeout=60)
            refused = server.predict({**meanflow_probe.request(), "steps": 20}).json()
    finally:
        write_schema()
    assert result["status"] == "succeeded", result
    frames = np.stack(decode_frames(write_data_uri(result["output"], tmp_path / "served.mp4")))
    # The server ran the patched rule: its frames are the patched probe's, bit for bit.
    np.testing.assert_array_equal(frames, probes["patched"]["frames_a"])
    assert refused["status"] == "failed" and "steps at most 12" in refused["error"], refused
