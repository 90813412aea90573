"""Live previews from the real samplers: tiny real DiTs (v1 and 1.5, t2v and i2v) through the production graphs.

The previews come from ComfyUI's own sampler callback (the x0 estimate), through our progress hook, as PreviewReady
events. To show a preview converges on the video, these renders decode with a stand-in VAE whose decoder *is*
ComfyUI's latent2rgb map for the family (the VAE the factors were fitted to approximate; the suites' usual stand-in
decodes with a random map, which no preview could match): the last preview must be closer to the decoded video
than the first, and the figures are printed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np
import pytest

from comfy_runtime.backends.contract import PreviewReady, StepProgress
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.render.preview import PreviewPolicy
from tests.support.media import decode_frames, png_data_uri
from tests.support.predictor import booted_predictor
from tests.support.tiny_hunyuan15 import write_tiny_family, write_tiny_models

V1, V15 = "hunyuan_t2v", "hunyuan15_720p_t2v"
LATENT2RGB_VAE_SEED = 7  # the stand-in VAE seed these graphs use: its decoder is latent2rgb (below)
REQUEST = dict(prompt="a red fox running through fresh snow", width=64, height=64, num_frames=9, steps=6, seed=1234)


@pytest.fixture(scope="module")
def workflows_dir(session_dirs, runtime, tmp_path_factory) -> Path:
    write_tiny_models(session_dirs["models"])
    target = tmp_path_factory.mktemp("preview-workflows")
    for name in (V1, V15):
        write_tiny_family(target, name)
    for path in target.glob("*.json"):
        graph = json.loads(path.read_text())
        for node in graph.values():
            if node["class_type"] in ("HVStandInVideoVAE", "HVStandIn15VideoVAE"):
                node["inputs"]["seed"] = LATENT2RGB_VAE_SEED
        path.write_text(json.dumps(graph, indent=2))
    return target


@pytest.fixture(scope="module")
def latent2rgb_vae(runtime):
    """The stand-in VAEs decode with ComfyUI's latent2rgb factors when built with LATENT2RGB_VAE_SEED."""
    import comfy.latent_formats
    import nodes
    import torch

    patched = []
    for loader, fmt in (("HVStandInVideoVAE", comfy.latent_formats.HunyuanVideo),
                        ("HVStandIn15VideoVAE", comfy.latent_formats.HunyuanVideo15)):
        cls = type(nodes.NODE_CLASS_MAPPINGS[loader]().load(seed=0)[0])
        original = cls.__init__

        def init(self, seed, original=original, fmt=fmt):
            original(self, seed)
            if seed == LATENT2RGB_VAE_SEED:
                self.to_rgb = torch.tensor(fmt.latent_rgb_factors).transpose(0, 1).contiguous()

        cls.__init__ = init
        patched.append((cls, original))
    yield
    for cls, original in patched:
        cls.__init__ = original


def _predictor(hv_env, workflows_dir, workflow, every, stream="1"):
    """predict.py streaming its previews (HV_STREAM_PREVIEWS): the service makes them only for a front door that
    takes them."""
    return booted_predictor({**hv_env, "HV_WORKFLOW": workflow, "HV_WORKFLOWS_DIR": str(workflows_dir),
                             "HV_PREVIEW_EVERY": str(every), "HV_STREAM_PREVIEWS": stream})


@pytest.fixture(scope="module")
def v1(hv_env, workflows_dir, latent2rgb_vae):
    predictor = _predictor(hv_env, workflows_dir, V1, 1)
    yield predictor
    predictor.service.close()


@pytest.fixture(scope="module")
def v15(hv_env, workflows_dir, latent2rgb_vae):
    predictor = _predictor(hv_env, workflows_dir, V15, 2)
    yield predictor
    predictor.service.close()


def render(predictor, **overrides):
    """The run's events and the decoded video's frames (read before the next render removes the folder)."""
    events = []
    rendered = predictor.service.render(VideoRequest(**{**REQUEST, **overrides}), subscribers=(events.append,))
    return events, np.stack(decode_frames(rendered.video))


def preview_frames(event: PreviewReady) -> np.ndarray:
    with av.open(io.BytesIO(event.data)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def _box(frames: np.ndarray, side: int) -> np.ndarray:
    count, height, width = frames.shape[:3]
    factor = height // side
    return frames.astype(np.float64).reshape(count, side, factor, width // factor, factor, 3).mean(axis=(2, 4))


def closeness(preview: np.ndarray, video: np.ndarray, latent_size: int) -> float:
    """Pearson correlation of a preview with the decoded video at the latent frames' positions (0, 4, 8 ...), both
    box-downscaled to the latent's own grid (where neither the preview's bilinear upscale nor the VAE's blocks
    weigh in)."""
    picked = video[::4][: preview.shape[0]]
    return float(np.corrcoef(_box(preview, latent_size).ravel(), _box(picked, latent_size).ravel())[0, 1])


def check_previews(events, video, latent_size: int, name: str, every: int) -> None:
    previews = [event for event in events if isinstance(event, PreviewReady)]
    steps = [event for event in events if isinstance(event, StepProgress) and event.class_type == "SamplerCustomAdvanced"]
    assert [p.step for p in previews] == list(range(every, 7, every)) and {p.total for p in previews} == {6}
    # Each preview follows its step's progress event, as subscribers read them.
    for preview in previews:
        before = events[events.index(preview) - 1]
        assert isinstance(before, StepProgress) and before.step == preview.step
    assert len(steps) == 6
    etas = [step.eta_seconds for step in steps]  # the pipeline's ETA rides on each step, for every subscriber
    assert None not in etas and etas[-1] < etas[0], etas
    latent_frames = 1 + (REQUEST["num_frames"] - 1) // 4
    decoded = [preview_frames(p) for p in previews]
    for preview, frames in zip(previews, decoded, strict=True):
        # Every latent frame, a quarter of the output's side: the latent's own size times 2 (v1) or 4 (1.5).
        assert (preview.frames, preview.width, preview.height) == (latent_frames, 16, 16), preview
        assert frames.shape == (latent_frames, 16, 16, 3)
        # Written into the run's folder, which keeps only the video once it is encoded: subscribers take the bytes.
        assert preview.path.parent.name == "previews" and not preview.path.exists() and preview.format == "mp4"
    changes = [float(np.abs(a.astype(int) - b.astype(int)).mean()) for a, b in zip(decoded, decoded[1:], strict=False)]
    assert all(change > 0.5 for change in changes), changes
    figures = [closeness(frames, video, latent_size) for frames in decoded]
    print(f"{name}: correlation of each preview (steps {every}-6 by {every}) with the decoded video: "
          + ", ".join(f"{figure:.3f}" for figure in figures) + "; change between previews (mean |d|): "
          + ", ".join(f"{change:.1f}" for change in changes)
          + f"; cost {max(p.seconds for p in previews) * 1000:.1f} ms at most")
    assert figures[-1] > figures[0] + 0.02, figures


def test_v1_text_to_video_previews_appear_every_n_steps_and_converge_on_the_video(v1):
    events, video = render(v1)
    check_previews(events, video, 8, "v1 t2v", every=1)


def test_v1_image_to_video_previews(v1):
    events, video = render(v1, image=png_data_uri(1))
    check_previews(events, video, 8, "v1 i2v", every=1)


def test_v15_text_to_video_previews(v15):
    events, video = render(v15)
    check_previews(events, video, 4, "1.5 t2v", every=2)


def test_v15_image_to_video_previews(v15):
    events, video = render(v15, image=png_data_uri(1))
    check_previews(events, video, 4, "1.5 i2v", every=2)


def test_no_previews_when_off_and_none_left_in_the_run_folder(v1):
    v1.service.model.runtime.previews = PreviewPolicy(every=0)
    try:
        events, _video = render(v1, seed=77)  # a seed of its own: ComfyUI's cache cannot answer it
    finally:
        v1.service.model.runtime.previews = PreviewPolicy(every=1)
    assert not [event for event in events if isinstance(event, PreviewReady)]
    assert any(isinstance(event, StepProgress) for event in events)


def test_a_one_file_cog_predictor_makes_no_previews_whatever_the_interval(hv_env, workflows_dir, latent2rgb_vae):
    plain = _predictor(hv_env, workflows_dir, V1, 1, stream="0")  # HV_PREVIEW_EVERY=1, but nothing takes them
    try:
        events, _video = render(plain, seed=78)
    finally:
        plain.service.close()
    assert not [event for event in events if isinstance(event, PreviewReady)]
    assert any(isinstance(event, StepProgress) and event.total == REQUEST["steps"] for event in events)  # it sampled


# -- Cog's streamed outputs (HV_STREAM_PREVIEWS=1) through the real coglet ------------------------------------


@pytest.fixture(scope="module")
def stream_server(hv_env, workflows_dir, tmp_path_factory):
    """The real coglet serving predict.py with HV_STREAM_PREVIEWS=1 (each model call slowed a little, so a cancel
    can land mid-render), and the schema `cog build` would write for that image."""
    import shutil

    from comfy_runtime.cog_schema import SCHEMA_PATH, write_schema
    from local_servers.cog_server import CogServer
    from tests.support.tiny_hunyuan15 import slow_model

    root = tmp_path_factory.mktemp("stream")
    shutil.copytree(workflows_dir, root / "workflows")
    env = {**hv_env, "HV_WORKFLOW": V1, "HV_WORKFLOWS_DIR": str(slow_model(root / "workflows", V1, 0.05)),
           "HV_STREAM_PREVIEWS": "1", "HV_PREVIEW_EVERY": "2"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        write_schema()  # what `cog build` writes for this image: an iterator of files
    try:
        schema = json.loads(SCHEMA_PATH.read_text())
        with CogServer(env, root / "server.log") as server:
            server.wait_until_ready()
            server.schema = schema
            yield server
    finally:
        write_schema()  # the session's own (single file), for the suites after this one


def _stream(server, webhooks, inputs):
    import uuid

    prediction_id = uuid.uuid4().hex
    response = server.client.post("/predictions", headers={"Prefer": "respond-async"}, json={
        "id": prediction_id, "input": inputs, "webhook": f"{webhooks.url}/hook",
        "webhook_events_filter": ["output", "completed"]})
    assert response.status_code == 202, response.text
    return prediction_id


def test_stream_mode_through_coglet_streams_each_preview_then_the_video_last(stream_server, webhooks, tmp_path):
    from tests.support.media import probe_video, write_data_uri

    assert stream_server.schema["components"]["schemas"]["Output"] == {
        "title": "Output", "type": "array", "items": {"type": "string", "format": "uri"},
        "x-cog-array-type": "iterator"}
    prediction_id = _stream(stream_server, webhooks, {**REQUEST, "steps": 6})
    final = webhooks.wait_final(prediction_id, timeout=120)
    assert final["status"] == "succeeded", final.get("error") or stream_server.logs()
    outputs = final["output"]
    assert len(outputs) == 4, [uri[:40] for uri in outputs]
    # The render thread's progress lines (with their ETA) and metrics reach this prediction, as in single-file mode.
    assert "SamplerCustomAdvanced step 6/6 (" in final["logs"] and final["metrics"]["seed"] == REQUEST["seed"], final
    seen = [len(event["output"] or []) for event in webhooks.for_prediction(prediction_id)]
    assert seen[:-1] == sorted(seen[:-1]) and 1 in seen and 3 in seen, seen  # outputs grew one by one
    probes = [probe_video(write_data_uri(uri, tmp_path / f"out{index}.mp4")) for index, uri in enumerate(outputs)]
    assert [(p.frames, p.width, p.height) for p in probes[:3]] == [(3, 16, 16)] * 3  # previews at steps 2, 4, 6
    assert (probes[3].frames, probes[3].width, probes[3].height) == (9, 64, 64)  # the video, last
    print(f"streamed outputs as the webhooks saw them: {seen}")


def test_stream_mode_cancel_after_the_first_preview_ends_canceled_and_the_next_runs(stream_server, webhooks):
    prediction_id = _stream(stream_server, webhooks, {**REQUEST, "steps": 100, "seed": 31})
    webhooks.wait_for(prediction_id, lambda events: any(e["output"] for e in events), "the first streamed preview",
                      timeout=120)
    assert stream_server.client.post(f"/predictions/{prediction_id}/cancel").status_code == 200
    final = webhooks.wait_final(prediction_id, timeout=60)
    assert final["status"] == "canceled", final
    assert 1 <= len(final["output"] or []) < 50  # the previews sent before the cancel, no video
    stream_server.wait_for_status({"READY"}, timeout=60)
    again = _stream(stream_server, webhooks, {**REQUEST, "steps": 2, "seed": 32})
    assert webhooks.wait_final(again, timeout=120)["status"] == "succeeded"


def test_bad_preview_settings_are_refused_at_setup_with_the_fix(hv_env, workflows_dir):
    from comfy_runtime.render.preview import PreviewSettingRefused

    base = {**hv_env, "HV_WORKFLOW": V1, "HV_WORKFLOWS_DIR": str(workflows_dir)}
    for extra, says in (({"HV_PREVIEW_EVERY": "-1"}, "HV_PREVIEW_EVERY=-1 is negative: use 0"),
                        ({"HV_PREVIEW_FORMAT": "gif"}, "HV_PREVIEW_FORMAT='gif' is not one of mp4, webp"),
                        ({"HV_STREAM_PREVIEWS": "1", "HV_PREVIEW_EVERY": "0"}, "set HV_PREVIEW_EVERY=5")):
        with pytest.raises(PreviewSettingRefused, match=says) as refused:
            booted_predictor({**base, **extra})
        assert "\n" not in str(refused.value)


@pytest.mark.parametrize("which,channels,name", [("v1", 16, "taehv"), ("v15", 32, "lighttaehy1_5")])
def test_comfyuis_tiny_vae_in_vae_approx_makes_the_previews_when_present(request, session_dirs, which, channels,
                                                                         name):
    """Proven with a stand-in of the real file's shape (ComfyUI's own TAEHV module, seeded random weights, fp16
    as the published taehv): ComfyUI's VAE loader detects it, and it decodes the x0 estimate."""
    predictor = request.getfixturevalue(which)  # ComfyUI booted first: its modules import from there
    import comfy.taesd.taehv
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    weights = {key: (torch.randn(value.shape, generator=generator) * 0.05).to(torch.float16).contiguous()
               for key, value in comfy.taesd.taehv.TAEHV(latent_channels=channels).state_dict().items()}
    path = session_dirs["models"] / "vae_approx" / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(path))
    try:
        events, _video = render(predictor, seed=4000 + channels)  # a seed of its own: ComfyUI's cache cannot answer it
    finally:
        path.unlink()  # the other tests' previews are latent2rgb's
    previews = [event for event in events if isinstance(event, PreviewReady)]
    assert previews and {p.method for p in previews} == {name}, [p.method for p in previews]
    latent_frames = 1 + (REQUEST["num_frames"] - 1) // 4
    assert {(p.frames, p.width, p.height) for p in previews} == {(latent_frames, 16, 16)}
    assert {preview_frames(p).shape for p in previews} == {(latent_frames, 16, 16, 3)}
    print(f"{name} stand-in: {len(previews)} previews, {max(p.seconds for p in previews) * 1000:.1f} ms at most")
    events, _video = render(predictor, seed=99)  # the file gone: latent2rgb again
    assert {e.method for e in events if isinstance(e, PreviewReady)} == {"latent2rgb"}
