"""HunyuanVideo 1.5 (t2v, i2v, the 1080p stage) and HunyuanVideo v1 image-to-video with tiny real DiTs.

The graphs are the bundled workflows with only the loaders that cannot run on a CPU swapped for stand-ins
(tests/tiny_hunyuan15.py); UNETLoader, LatentUpscaleModelLoader and every sampling, conditioning and decode
node are the production ones with the production bindings, run by the real Predictor. Renders are 64x64,
5 frames, 2 steps.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from comfy_runtime.graph.workflow import WORKFLOWS_DIR, load_workflow
from comfy_runtime.render.model_choice import ModelCannotUse
from predict import Predictor
from tests.support.media import decode_frames, png_data_uri, probe_video
from tests.support.predictor import booted_predictor
from tests.support.tiny_hunyuan15 import BASE15 as BASE
from tests.support.tiny_hunyuan15 import TINY_DITS, stand_in_for, write_tiny_family, write_tiny_models
from tests.support.tiny_renders import Output, mean_abs_diff

T2V = "hunyuan15_720p_t2v"


@pytest.fixture(scope="module")
def tiny_models(session_dirs, runtime) -> dict[str, Path]:
    return write_tiny_models(session_dirs["models"])


@pytest.fixture(scope="module")
def workflows_dir(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("tiny-hv15-workflows")
    for name in (T2V, "hunyuan15_480p_t2v", "hunyuan15_480p_distilled_t2v", "hunyuan_t2v"):
        write_tiny_family(target, name)
    return target


@pytest.fixture(scope="module")
def predictor(hv_env, tiny_models, workflows_dir):
    predictor = booted_predictor({**hv_env, "HV_WORKFLOW": T2V, "HV_WORKFLOWS_DIR": str(workflows_dir), "HV_UPSCALE": "true"})
    yield predictor
    predictor.service.close()


def render(predictor: Predictor, **overrides) -> Output:
    path = predictor.predict(**{**BASE, **overrides})
    return Output(probe_video(path), np.stack(decode_frames(path)))


@pytest.fixture(scope="module")
def baseline(predictor) -> Output:
    return render(predictor)


@pytest.fixture
def dit_inputs(monkeypatch) -> list[dict]:
    """What the HunyuanVideo DiT's forward receives on each call (its real input, recorded; calls straight through)."""
    from comfy.ldm.hunyuan_video.model import HunyuanVideo

    seen: list[dict] = []
    original = HunyuanVideo.forward

    def recording(self, x, timestep, context, y=None, txt_byt5=None, clip_fea=None, *args, **kwargs):
        seen.append({"x": x.detach().clone(), "in_channels": self.img_in.proj.weight.shape[1],
                     "txt_byt5": None if txt_byt5 is None else tuple(txt_byt5.shape),
                     "clip_fea": None if clip_fea is None else tuple(clip_fea.shape)})
        return original(self, x, timestep, context, y, txt_byt5, clip_fea, *args, **kwargs)

    monkeypatch.setattr(HunyuanVideo, "forward", recording)
    return seen


# -- detection: each tiny file is taken for the intended model ------------------------------------------------


@pytest.mark.parametrize(
    "production,expected",
    [
        ("hunyuanvideo1.5_720p_t2v_fp16.safetensors", "HunyuanVideo15"),
        ("hunyuanvideo1.5_720p_i2v_fp16.safetensors", "HunyuanVideo15"),
        ("hunyuanvideo1.5_1080p_sr_distilled_fp16.safetensors", "HunyuanVideo15_SR_Distilled"),
        ("hunyuan_video_image_to_video_720p_bf16.safetensors", "HunyuanVideoI2V"),
        ("hunyuan_video_t2v_720p_bf16.safetensors", "HunyuanVideo"),
    ],
)
def test_each_tiny_dit_is_detected_as_its_model_through_unetloader(tiny_models, production, expected):
    import comfy.supported_models
    import nodes

    tiny, config, _seed = TINY_DITS[production]
    (model,) = nodes.NODE_CLASS_MAPPINGS["UNETLoader"]().load_unet(tiny, "default")
    assert type(model.model.model_config) is getattr(comfy.supported_models, expected)
    detected = model.model.model_config.unet_config
    for key in ("in_channels", "hidden_size", "vision_in_dim", "byt5", "guidance_embed"):
        assert detected[key] == config[key], key
    print(f"{production} -> {tiny}: {expected}, in_channels {detected['in_channels']}, "
          f"{sum(p.numel() for p in model.model.diffusion_model.parameters()) / 1e6:.1f} M params")


def test_a_narrower_vision_in_is_taken_for_hunyuan_image_refiner_not_video(session_dirs, runtime, tmp_path):
    """The trap the tiny 1.5 config avoids: vision_in must stay 1152 wide."""
    import comfy.supported_models
    import nodes

    from tests.support.tiny_hunyuan import write_dit
    from tests.support.tiny_hunyuan15 import TINY_DIT15_CONFIG

    write_dit(session_dirs["models"] / "diffusion_models" / "tiny_narrow_vision.safetensors",
              {**TINY_DIT15_CONFIG, "vision_in_dim": 64})
    (model,) = nodes.NODE_CLASS_MAPPINGS["UNETLoader"]().load_unet("tiny_narrow_vision.safetensors", "default")
    assert type(model.model.model_config) is comfy.supported_models.HunyuanImage21Refiner


def test_the_test_graphs_differ_from_production_only_in_stand_ins_and_model_files(workflows_dir):
    for workflow in load_workflow(T2V).family() + load_workflow("hunyuan_t2v").family():
        production = json.loads((WORKFLOWS_DIR / f"{workflow.name}.json").read_text())
        derived = load_workflow(workflow.name, workflows_dir)
        assert derived.bindings == workflow.bindings and derived.defaults == workflow.defaults
        assert set(derived.graph) == set(production)
        for node_id, node in production.items():
            test_node = derived.graph[node_id]
            if stand_in_for(node):
                assert test_node["class_type"].startswith("HVStandIn"), (workflow.name, node_id)
            elif node["class_type"] in ("UNETLoader", "LatentUpscaleModelLoader"):
                assert test_node["class_type"] == node["class_type"]
            else:
                assert (test_node["class_type"], test_node["inputs"]) == (node["class_type"], node["inputs"]), node_id


def test_the_480p_workflows_are_the_720p_graphs_with_other_dits_and_reference_settings():
    """The 480p models are proven through the 720p graphs they share node for node."""
    for low, high in (("hunyuan15_480p_t2v", T2V), ("hunyuan15_480p_i2v", "hunyuan15_720p_i2v"),
                      ("hunyuan15_480p_distilled_t2v", T2V)):
        low_graph, high_graph = load_workflow(low).graph, load_workflow(high).graph
        assert set(low_graph) == set(high_graph)
        for node_id, node in high_graph.items():
            other = low_graph[node_id]
            changed = {k for k in node["inputs"] if node["inputs"][k] != other["inputs"][k]}
            if node["class_type"] == "UNETLoader":
                assert changed == {"unet_name"}
            elif node["class_type"] == "CFGGuider" and "distilled" in low:
                assert changed == {"cfg"} and other["inputs"]["cfg"] == 1.0
            else:
                assert not changed, (low, node_id, changed)
    assert load_workflow("hunyuan15_480p_t2v").defaults["flow_shift"] == 5.0
    distilled = load_workflow("hunyuan15_480p_distilled_t2v")
    assert "guidance" not in distilled.bindings and "negative_prompt" not in distilled.bindings


# -- text-to-video: every exposed input reaches the output ------------------------------------------------------


@pytest.mark.parametrize(
    "name,value",
    [("prompt", "a grey heron standing in a misty river"), ("prompt", 'a red fox running through "SNOW"'),
     ("negative_prompt", "blurry, low quality"), ("steps", 3), ("guidance", 2.0), ("seed", 4321)],
)
def test_t2v_input_changes_the_pixels(predictor, baseline, name, value):
    frames = render(predictor, **{name: value}).frames
    assert frames.shape == baseline.frames.shape
    difference = mean_abs_diff(frames, baseline.frames)
    print(f"1.5 t2v {name}: {BASE.get(name, '')!r} -> {value!r}: mean |pixel difference| {difference:.2f}/255")
    assert difference > 0.5, f"{name} did not reach the model ({difference:.3f}/255)"


def test_quoted_text_reaches_the_dit_as_byt5_glyph_states(predictor, dit_inputs):
    render(predictor, prompt="a shop sign", seed=5)
    plain = {call["txt_byt5"] for call in dit_inputs}
    dit_inputs.clear()
    render(predictor, prompt='a shop sign that reads "OPEN"', seed=5)
    quoted = {call["txt_byt5"] for call in dit_inputs}
    assert plain == {None}
    assert None in quoted and any(shape and shape[-1] == 1472 for shape in quoted)  # the negative has no quotes


@pytest.mark.parametrize(
    "name,value,expected",
    [("width", 96, (5, 96, 64)), ("height", 80, (5, 64, 80)), ("num_frames", 9, (9, 64, 64))],
)
def test_t2v_size_and_length_change_the_video_shape(predictor, name, value, expected):
    video = render(predictor, **{name: value}).video
    print(f"1.5 t2v {name}: {BASE[name]} -> {value}: frames x width x height {video.frames}x{video.width}x{video.height}")
    assert (video.frames, video.width, video.height) == expected


def test_t2v_fps_changes_the_stream_rate(predictor):
    assert render(predictor, fps=12).video.fps == 12.0


def test_t2v_same_seed_same_frames(predictor):
    first, again = render(predictor, seed=2024).frames, render(predictor, seed=2024).frames
    assert mean_abs_diff(first, again) == 0


def _unshift(sigma: float, shift: float) -> float:
    return sigma / (shift - (shift - 1) * sigma)


def test_t2v_flow_shift_changes_the_sigmas_and_the_template_wiring_would_not(predictor, sigmas_seen, runtime, workflows_dir,
                                                                              tmp_path):
    render(predictor, flow_shift=9.0, seed=77, steps=4)
    render(predictor, flow_shift=2.0, seed=77, steps=4)
    high, low = sigmas_seen
    assert [_unshift(s, 9.0) for s in high] == pytest.approx([_unshift(s, 2.0) for s in low], abs=1e-5)
    assert all(h > lo for h, lo in zip(high[1:-1], low[1:-1], strict=True))
    # The Comfy-Org template's wiring: BasicScheduler fed by the loader. The same two shifts give one schedule.
    sigmas_seen.clear()
    workflow = load_workflow(T2V, workflows_dir)
    graph = copy.deepcopy(workflow.graph)
    graph["33"]["inputs"]["model"] = ["10", 0]
    trap = dataclasses.replace(workflow, graph=graph)
    for shift in (9.0, 2.0):
        runtime.run(trap.render({**BASE, "flow_shift": shift, "steps": 4}, filename_prefix=f"trap{shift}"), tmp_path / str(shift))
    assert len(sigmas_seen) == 2 and sigmas_seen[0] == sigmas_seen[1]


# -- refusals: what a model cannot use is refused before anything runs, never ignored ----------------------------


def test_more_frames_than_the_model_was_trained_for_is_refused(predictor):
    with pytest.raises(ModelCannotUse, match=r"HunyuanVideo 1\.5 720p.*num_frames at most 121"):
        predictor.predict(**{**BASE, "num_frames": 125})


@pytest.fixture(scope="module")
def v1_predictor(hv_env, tiny_models, workflows_dir):
    predictor = booted_predictor({**hv_env, "HV_WORKFLOW": "hunyuan_t2v", "HV_WORKFLOWS_DIR": str(workflows_dir)})
    yield predictor
    predictor.service.close()


def test_a_negative_prompt_on_guidance_distilled_v1_is_refused_naming_the_model(v1_predictor):
    with pytest.raises(ModelCannotUse, match=r"HunyuanVideo \(v1\) cannot use negative_prompt='blurry'"):
        v1_predictor.predict(**{**BASE, "negative_prompt": "blurry"})
    with pytest.raises(ModelCannotUse, match="no 1080p stage"):
        v1_predictor.predict(**{**BASE, "upscale": "1080p"})


def test_the_cfg_distilled_model_refuses_guidance_and_negative_prompt(hv_env, tiny_models, workflows_dir):
    predictor = booted_predictor({**hv_env, "HV_WORKFLOW": "hunyuan15_480p_distilled_t2v", "HV_WORKFLOWS_DIR": str(workflows_dir)})
    try:
        with pytest.raises(ModelCannotUse, match=r"cfg-distilled cannot use guidance=6\.0"):
            predictor.predict(**BASE)
        with pytest.raises(ModelCannotUse, match="has no image-to-video workflow"):
            predictor.predict(**{**BASE, "guidance": 1.0, "image": png_data_uri(1)})
        video = render(predictor, guidance=1.0).video  # its default: renders
        assert (video.frames, video.width, video.height) == (5, 64, 64)
    finally:
        predictor.service.close()


# -- image-to-video -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def i2v_baseline(predictor) -> Output:
    return render(predictor, image=png_data_uri(1))


def test_an_image_switches_to_image_to_video_and_its_dit(predictor, baseline, i2v_baseline, dit_inputs, capsys):
    render(predictor, image=png_data_uri(1), seed=9)
    assert {call["in_channels"] for call in dit_inputs} == {65}
    assert all(call["clip_fea"] == (1, 729, 1152) for call in dit_inputs)  # SigLIP's states reach vision_in
    assert "start image: 64x64 fitted to 64x64" in capsys.readouterr().out
    assert mean_abs_diff(i2v_baseline.frames, baseline.frames) > 0.5


@pytest.mark.parametrize(
    "name,value",
    [("image", png_data_uri(2)), ("prompt", "a grey heron standing in a misty river"),
     ("negative_prompt", "blurry, low quality, distorted faces, watermark, overexposed"), ("guidance", 2.0), ("seed", 4321),
     ("steps", 3)],
)
def test_i2v_input_changes_the_pixels(predictor, i2v_baseline, name, value):
    frames = render(predictor, **{"image": png_data_uri(1), name: value}).frames
    difference = mean_abs_diff(frames, i2v_baseline.frames)
    shown = "png seed 1 -> png seed 2" if name == "image" else f"{BASE.get(name, '')!r} -> {value!r}"
    print(f"1.5 i2v {name}: {shown}: mean |pixel difference| {difference:.2f}/255")
    # The start image anchors every frame, so text inputs move them less than in text-to-video.
    assert difference > 0.3


def test_i2v_the_dit_receives_the_vae_encoding_of_the_fitted_start_image(predictor, dit_inputs, runtime):
    """Recorded at the DiT's input: channels 32-63 of its first call are the VAE latent of the fitted image."""
    import comfy.latent_formats
    import nodes
    import torch

    from comfy_runtime.render.plan import fit_image
    from comfy_runtime.render.start_image import decode_image

    uri = png_data_uri(3, size=(128, 96))  # 4:3, fitted to 64x64 by covering and cropping the centre
    render(predictor, image=uri, seed=11)
    x = dit_inputs[0]["x"]
    assert x.shape[1] == 65
    fitted_image = fit_image(decode_image(base64.b64decode(uri.split(",", 1)[1])), 64, 64)
    assert fitted_image.size == (64, 64)
    fitted = np.asarray(fitted_image, dtype=np.float32) / 255.0
    (vae,) = nodes.NODE_CLASS_MAPPINGS["HVStandIn15VideoVAE"]().load(seed=0)
    expected = comfy.latent_formats.HunyuanVideo15().process_in(vae.encode(torch.from_numpy(fitted)[None]))
    image_channels = x[:1, 32:64, :1]
    assert torch.allclose(image_channels.float(), expected.float(), atol=2e-2), float((image_channels - expected).abs().max())
    assert float(x[:1, 64, 0].abs().max()) > 0.99 and float(x[:1, 64, 1:].abs().max()) == 0  # mask: frame 0 given


def test_i2v_takes_its_own_reference_shift_when_the_caller_leaves_it(predictor, sigmas_seen):
    """1.5 720p i2v's reference shift is 7, t2v's 9: an image without a flow_shift gets the i2v one."""
    request = {k: v for k, v in BASE.items() if k != "flow_shift"}
    predictor.predict(**{**request, "steps": 3})
    predictor.predict(**{**request, "steps": 3, "image": png_data_uri(1)})
    t2v, i2v = sigmas_seen
    assert [_unshift(s, 9.0) for s in t2v] == pytest.approx([_unshift(s, 7.0) for s in i2v], abs=1e-5)


def test_with_no_size_the_image_aspect_sets_it_on_the_model_grid(predictor):
    from comfy_runtime.render.plan import size_for_aspect

    assert size_for_aspect((1600, 900), (1280, 720)) == (1280, 720)
    assert size_for_aspect((900, 1600), (1280, 720)) == (720, 1280)
    assert size_for_aspect((1000, 1000), (1280, 720)) == (960, 960)
    # Through the renderer with the tiny model: its reference area would be 1280x720, too big for a CPU test,
    # so the request here uses the renderer with a small-area default.
    renderer = predictor.service
    i2v = renderer.model.stages.ready["hunyuan15_720p_i2v"]
    small = dataclasses.replace(i2v, defaults={**i2v.defaults, "width": 96, "height": 96, "num_frames": 5, "steps": 2})
    renderer.model.stages.ready["hunyuan15_720p_i2v"] = small
    try:
        from comfy_runtime.job.request import VideoRequest

        rendered = renderer.render(VideoRequest(prompt="a tall tower", image=png_data_uri(4, size=(64, 128))), log_line=print)
        video = probe_video(rendered.video)
        assert (video.width, video.height) == (64, 128)  # 1:2 on the 16-pixel grid, within 96x96's area
    finally:
        renderer.model.stages.ready["hunyuan15_720p_i2v"] = i2v


def test_an_image_on_a_deployment_without_image_to_video_is_refused(hv_env, tiny_models, workflows_dir):
    predictor = booted_predictor({**hv_env, "HV_WORKFLOW": T2V, "HV_WORKFLOWS_DIR": str(workflows_dir),
                            "HV_IMAGE_TO_VIDEO": "false"})
    try:
        with pytest.raises(ModelCannotUse, match="does not serve image-to-video .*HV_IMAGE_TO_VIDEO is off"):
            predictor.predict(**BASE, image=png_data_uri(1))
        with pytest.raises(ModelCannotUse, match="does not serve 1080p upscale .*HV_UPSCALE is off"):
            predictor.predict(**BASE, upscale="1080p")
    finally:
        predictor.service.close()


# -- HunyuanVideo v1 image-to-video ---------------------------------------------------------------------------------


def test_v1_i2v_a_different_start_image_changes_the_video(v1_predictor, dit_inputs):
    first = render(v1_predictor, image=png_data_uri(1)).frames
    assert {call["in_channels"] for call in dit_inputs} == {33}
    second = render(v1_predictor, image=png_data_uri(2)).frames
    t2v = render(v1_predictor).frames
    difference = mean_abs_diff(first, second)
    print(f"v1 i2v image: png seed 1 -> png seed 2: mean |pixel difference| {difference:.2f}/255; "
          f"vs t2v {mean_abs_diff(first, t2v):.2f}/255")
    assert difference > 0.5 and mean_abs_diff(first, t2v) > 0.5


@pytest.mark.parametrize("name,value", [("prompt", "a grey heron standing in a misty river"), ("guidance", 2.0),
                                        ("seed", 4321)])
def test_v1_i2v_input_changes_the_pixels(v1_predictor, name, value):
    base = render(v1_predictor, image=png_data_uri(1)).frames
    frames = render(v1_predictor, image=png_data_uri(1), **{name: value}).frames
    difference = mean_abs_diff(frames, base)
    print(f"v1 i2v {name}: {BASE[name]!r} -> {value!r}: mean |pixel difference| {difference:.2f}/255")
    assert difference > 0.5


def test_v1_i2v_refuses_a_16_channel_dit_that_would_ignore_the_image(hv_env, tiny_models, workflows_dir, tmp_path):
    """HunyuanImageToVideo's "v1 (concat)" runs on a text-to-video DiT and drops the image: setup refuses it."""
    from tests.support.tiny_hunyuan import TINY_DIT_NAME

    folder = tmp_path / "workflows"
    shutil.copytree(workflows_dir, folder)
    graph = json.loads((folder / "hunyuan_i2v.json").read_text())
    graph["10"]["inputs"]["unet_name"] = TINY_DIT_NAME
    (folder / "hunyuan_i2v.json").write_text(json.dumps(graph))
    from comfy_runtime.render.served_model import WrongModelFile

    with pytest.raises(WrongModelFile, match="needs a DiT with 33 input channels .* has 16"):
        booted_predictor({**hv_env, "HV_WORKFLOW": "hunyuan_t2v", "HV_WORKFLOWS_DIR": str(folder)})


# -- the 1080p super-resolution stage --------------------------------------------------------------------------------


def test_upscale_runs_the_sr_stage_at_one_and_a_half_times_the_size(predictor, baseline, dit_inputs, sigmas_seen):
    output = render(predictor, upscale="1080p")
    assert (output.video.width, output.video.height, output.video.frames) == (96, 96, baseline.video.frames)
    assert sorted({call["in_channels"] for call in dit_inputs}) == [65, 98]  # the base DiT, then the SR DiT
    base_sigmas, sr_sigmas = sigmas_seen
    assert len(base_sigmas) == BASE["steps"] + 1 and len(sr_sigmas) == 8 + 1  # Tencent's 8 SR steps
    # The SR scheduler takes the shift-2 model: its schedule is the plain one bent by exactly 2.
    plain = [1 - i / 8 for i in range(9)]
    assert [_unshift(s, 2.0) for s in sr_sigmas] == pytest.approx(plain, abs=1e-4)
    print(f"upscale 1080p: {baseline.video.width}x{baseline.video.height} -> {output.video.width}x{output.video.height}, "
          f"{output.video.frames} frames")


def test_upscale_with_an_image_runs_the_i2v_sr_chain(predictor):
    output = render(predictor, upscale="1080p", image=png_data_uri(1), width=80)
    assert (output.video.width, output.video.height) == (112, 96)  # 80 x 1.5 = 120, floored to the 16 grid


def test_upscale_on_a_model_without_the_stage_is_refused(hv_env, tiny_models, workflows_dir):
    predictor = booted_predictor({**hv_env, "HV_WORKFLOW": "hunyuan15_480p_t2v", "HV_WORKFLOWS_DIR": str(workflows_dir)})
    try:
        with pytest.raises(ModelCannotUse, match=r"HunyuanVideo 1\.5 480p has no 1080p stage: set upscale to one of none"):
            predictor.predict(**BASE, upscale="1080p")
    finally:
        predictor.service.close()


# -- the image through the front ends ------------------------------------------------------------------------------


def test_an_image_url_to_loopback_is_refused_before_anything_runs(predictor, tmp_path, session_dirs):
    from comfy_runtime.supply.url_fetch import URLRefused
    from local_servers.range_server import RangeServer

    (tmp_path / "start.png").write_bytes(base64.b64decode(png_data_uri(1).split(",", 1)[1]))
    before = set(session_dirs["outputs"].iterdir())
    with RangeServer(tmp_path) as server:
        with pytest.raises(URLRefused, match="127.0.0.1, a loopback address"):
            predictor.predict(**BASE, image=f"https://127.0.0.1:{server.url.rsplit(':', 1)[1]}/start.png")
        assert server.requests == []
    assert set(session_dirs["outputs"].iterdir()) <= before  # no run folder left behind


def _schema(env: dict[str, str]) -> dict:
    import os
    import subprocess
    import sys

    from comfy_runtime.settings import PROJECT_ROOT

    out = Path(env["HV_OUTPUT_DIR"]) / f"schema-{env['HV_WORKFLOW']}.json"
    subprocess.run([sys.executable, "-m", "comfy_runtime", "schema", "--output", str(out)], cwd=PROJECT_ROOT,
                   env={**os.environ, **env}, check=True, capture_output=True, timeout=120)
    return json.loads(out.read_text())["components"]["schemas"]["Input"]["properties"]


def test_the_cog_schema_shows_the_configured_models_defaults(hv_env):
    hv15 = _schema({**hv_env, "HV_WORKFLOW": T2V})
    v1 = _schema({**hv_env, "HV_WORKFLOW": "hunyuan_t2v"})
    shown = {name: (hv15[name].get("default"), v1[name].get("default"))
             for name in ("width", "height", "num_frames", "steps", "flow_shift")}
    print(f"schema defaults (1.5 720p, v1): {shown}")
    assert shown == {"width": (1280, 848), "height": (720, 480), "num_frames": (121, 73), "steps": (50, 30),
                     "flow_shift": (None, 7.0)}
    # 1.5 720p's flow shift differs between its workflows: shown empty, with each workflow's value.
    assert "9.0 (hunyuan15_720p_t2v)" in hv15["flow_shift"]["description"]
    assert "7.0 (hunyuan15_720p_i2v)" in hv15["flow_shift"]["description"]
    assert hv15["image"]["type"] == "string" and "format" not in hv15["image"]  # coglet must not fetch it itself
    assert hv15["upscale"]["enum"] == ["none", "1080p"] and hv15["negative_prompt"]["default"] == ""


@pytest.mark.cog_server
def test_i2v_through_the_real_cog_server_with_a_data_uri_and_an_allowlisted_url(hv_env, tiny_models, workflows_dir, tmp_path):
    from comfy_runtime.cog_schema import write_schema
    from local_servers.cog_server import CogServer
    from local_servers.range_server import RangeServer
    from tests.support.media import write_data_uri

    env = {**hv_env, "HV_WORKFLOW": T2V, "HV_WORKFLOWS_DIR": str(workflows_dir), "HV_URL_ALLOW_HTTP": "true",
           "HV_URL_ALLOW_HOSTS": '["127.0.0.1"]'}
    served = tmp_path / "served"
    served.mkdir()
    (served / "start.png").write_bytes(base64.b64decode(png_data_uri(2).split(",", 1)[1]))
    with pytest.MonkeyPatch.context() as patch:  # coglet validates against the schema of the model it serves
        for name, value in env.items():
            patch.setenv(name, value)
        write_schema()
    try:
        with RangeServer(served) as images, CogServer(env, tmp_path / "server.log") as server:
            body, _ = server.wait_for_status({"READY", "SETUP_FAILED"})
            assert body["status"] == "READY", server.logs()
            results = {}
            for label, image in (("data URI", png_data_uri(1)), ("URL", f"{images.url}/start.png")):
                # coglet answers a sync prediction a moment before it frees its slot ("At capacity"): wait for READY.
                server.wait_for_status({"READY"}, timeout=60)
                # flow_shift left out: the schema shows it empty (it differs per workflow); i2v's 7 applies.
                response = server.predict({**{k: v for k, v in BASE.items() if k != "flow_shift"}, "image": image})
                assert response.status_code == 200, response.text
                results[label] = response.json()
            assert [path for _m, path, _r in images.requests] == ["/start.png"]
    finally:
        write_schema()  # back to the session's (hv_env's workflow), for the other Cog server tests
    frames = {}
    for label, result in results.items():
        assert result["status"] == "succeeded", result
        assert "start image: 64x64 fitted to 64x64" in result["logs"]
        path = write_data_uri(result["output"], tmp_path / f"{label}.mp4")
        video = probe_video(path)
        assert (video.frames, video.width, video.height) == (5, 64, 64)
        frames[label] = np.stack(decode_frames(path))
    assert mean_abs_diff(frames["data URI"], frames["URL"]) > 0.5  # two different start images


# -- memory budget per model ---------------------------------------------------------------------------------------


def test_the_budget_takes_each_models_trained_size_and_the_1080p_stage():
    from comfy_runtime.job.budget import OverBudget, budget_for
    from comfy_runtime.job.limits import JobLimits
    from comfy_runtime.job.request import VideoRequest

    def check(gib, width, height, frames, workflow_name, upscale=False):
        workflow = load_workflow(workflow_name)
        chain = workflow.upscale["1080p"] if upscale else workflow
        scale = max(t.scale for t in chain.bindings["width"])
        request = VideoRequest(prompt="x", width=width, height=height, num_frames=frames)
        JobLimits(budget_for(None, gib * 2**30)).check(request, scale, int(chain.limits["max_pixel_frames"]), chain.title)

    check(141, 1280, 720, 121, T2V)  # H200: 1.5 at its reference size
    check(141, 1280, 720, 121, T2V, upscale=True)  # ... and its 1080p stage
    check(80, 1280, 720, 121, T2V, upscale=True)  # 80 GB: 1920x1072x121 still fits
    with pytest.raises(OverBudget, match=r"super-resolution stage samples 1\.5x each side.*: lower num_frames to \d+"):
        check(40, 1280, 720, 121, T2V, upscale=True)
    with pytest.raises(OverBudget, match=r"HunyuanVideo 1\.5 480p's largest trained size"):
        check(141, 1280, 720, 121, "hunyuan15_480p_t2v")


def test_upscale_over_the_budget_is_refused_where_the_plain_render_fits(predictor):
    from comfy_runtime.job.budget import MemoryBudget, OverBudget
    from comfy_runtime.job.limits import JobLimits

    renderer = predictor.service.model
    saved = renderer.limits
    renderer.limits = JobLimits(MemoryBudget(64 * 64 * 5 * 2, "set"))  # room for 64x64x5 once, not 1.5x per side
    try:
        assert render(predictor).video.width == 64
        with pytest.raises(OverBudget, match="super-resolution stage"):
            predictor.predict(**BASE, upscale="1080p")
    finally:
        renderer.limits = saved


# -- per model and mode: the same seed gives the same frames; flow shift reaches the sigmas ----------------------


MODES = {
    "1.5 i2v": ("predictor", {"image": png_data_uri(1)}),
    "1.5 t2v + 1080p": ("predictor", {"upscale": "1080p"}),
    "v1 i2v": ("v1_predictor", {"image": png_data_uri(1)}),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_same_seed_same_frames_and_flow_shift_reaches_the_sigmas(request, mode, sigmas_seen):
    fixture, extra = MODES[mode]
    predictor = request.getfixturevalue(fixture)
    first = render(predictor, **extra, seed=31).frames
    again = render(predictor, **extra, seed=31).frames
    assert mean_abs_diff(first, again) == 0, mode
    sigmas_seen.clear()
    render(predictor, **extra, flow_shift=9.0, steps=4)
    render(predictor, **extra, flow_shift=2.0, steps=4)
    high, low = sigmas_seen[0], sigmas_seen[-1 if "1080p" not in mode else 2]  # the SR stage samples too
    assert [_unshift(s, 9.0) for s in high] == pytest.approx([_unshift(s, 2.0) for s in low], abs=1e-5), mode
    assert all(h > lo for h, lo in zip(high[1:-1], low[1:-1], strict=True)), mode
