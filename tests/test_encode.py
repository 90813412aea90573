"""The delivered file: formats, quality and reproducibility, on the plumbing graph through real ComfyUI."""

import hashlib

import av
import numpy as np
import pytest
from PIL import Image, ImageSequence
from pydantic import ValidationError

from comfy_runtime.graph.frame_tap import add_frame_tap, tapped_file
from comfy_runtime.graph.workflow import load_workflow
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.render.encode import MAX_CRF, codec_options
from comfy_runtime.render.served_model import ServedModel
from comfy_runtime.service import VideoService
from tests.support.media import decode_frames, probe_video

QUIET = lambda _line: None  # noqa: E731
REQUEST = VideoRequest(prompt="x", width=128, height=96, num_frames=17, fps=12, seed=21)


@pytest.fixture
def renderer(runtime, tmp_path):
    return VideoService(ServedModel(runtime, load_workflow("plumbing_video"), tmp_path / "outputs"))


def render_bytes(renderer, **overrides) -> bytes:
    """Read at once: the next render removes this one's folder."""
    return renderer.render(REQUEST.model_copy(update=overrides), QUIET).video.read_bytes()


def test_same_seed_gives_a_byte_identical_mp4_and_another_seed_does_not(renderer):
    first, again, other = (render_bytes(renderer, seed=seed) for seed in (21, 21, 22))
    assert hashlib.sha256(first).digest() == hashlib.sha256(again).digest()
    assert first != other


def test_mp4_is_h264_yuv420p_high_profile_with_its_index_first(renderer):
    video = renderer.render(REQUEST, QUIET).video
    data = video.read_bytes()
    # faststart: the moov atom (the index) precedes mdat, so a player can start before the download ends.
    assert 0 <= data.find(b"moov") < data.find(b"mdat")
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt, stream.profile) == ("h264", "yuv420p", "High")
        assert container.format.name.split(",")[0] == "mov"
    probe = probe_video(video)
    assert (probe.frames, probe.width, probe.height, probe.fps) == (17, 128, 96, 12.0)


@pytest.mark.parametrize("output_format", ["mp4", "webm"])
def test_a_lower_crf_gives_a_larger_closer_file_with_the_same_frames(renderer, output_format):
    sizes, frames = {}, {}
    for crf in (8, 40):
        video = renderer.render(REQUEST.model_copy(update={"output_format": output_format, "crf": crf}), QUIET).video
        sizes[crf] = video.stat().st_size
        probe = probe_video(video)
        assert (probe.frames, probe.width, probe.height, probe.fps) == (17, 128, 96, 12.0)
        frames[crf] = decode_frames(video)
    assert sizes[8] > sizes[40], sizes
    assert any((a != b).any() for a, b in zip(frames[8], frames[40], strict=True))


def test_the_crf_maps_onto_vp9s_wider_scale_and_gif_ignores_it():
    assert codec_options("mp4", 23)["crf"] == "23"
    assert codec_options("webm", MAX_CRF)["crf"] == "63" and codec_options("webm", 1)["crf"] == "1"
    assert codec_options("gif", 23) == {}


@pytest.mark.parametrize("crf", [0, 52])
def test_a_crf_out_of_range_is_rejected_with_the_range(crf):
    with pytest.raises(ValidationError, match="crf"):
        VideoRequest(prompt="x", crf=crf)
    with pytest.raises(ValueError, match="use 1 .best, largest. to 51"):
        codec_options("mp4", crf)


def luma(frames) -> np.ndarray:
    return np.stack([frame.to_ndarray(format="gray") for frame in frames]).astype(float)


def decoded_luma(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return luma(container.decode(video=0))


@pytest.fixture
def frames_to_savevideo(monkeypatch) -> list[np.ndarray]:
    """The exact 8-bit frames ComfyUI's SaveVideo is handed (its own conversion; calls straight through)."""
    from comfy_api.latest._input_impl.video_types import VideoFromComponents

    seen: list[np.ndarray] = []
    original = VideoFromComponents.save_to

    def recording(self, *args, **kwargs):
        seen.append((self.get_components().images * 255).clamp(0, 255).byte().cpu().numpy())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VideoFromComponents, "save_to", recording)
    return seen


def test_the_delivered_file_is_encoded_from_the_exact_frames_not_from_savevideos_h264(
    runtime, renderer, tmp_path, frames_to_savevideo
):
    """A control run keeps what the service deletes (the tapped frames, SaveVideo's own mp4); the service run
    with the same seed must deliver far closer to the exact frames than SaveVideo's file is."""
    workflow = load_workflow("plumbing_video")
    values = REQUEST.model_dump(exclude={"output_format", "crf", "prompt"})
    graph, tap = add_frame_tap(workflow.render(values, filename_prefix="control"), "control_frame", replace_saver=False)
    result = runtime.run(graph, tmp_path / "control")
    exact = frames_to_savevideo[0]
    with Image.open(tapped_file(tap, result.ui_outputs, result.files)) as tapped:
        tapped_frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(tapped)]
    assert tap.fps == 12 and np.array_equal(np.stack(tapped_frames), exact)  # the tap is lossless
    exact_luma = luma(av.VideoFrame.from_ndarray(frame, format="rgb24") for frame in exact)
    (savevideo,) = [path for path in result.files if path.suffix == ".mp4"]

    delivered = renderer.render(REQUEST.model_copy(update={"crf": 1}), QUIET).video
    assert len(frames_to_savevideo) == 1, "the service's graph must not run SaveVideo: the tap replaces it"
    delivered_error = np.abs(decoded_luma(delivered) - exact_luma).mean()
    savevideo_error = np.abs(decoded_luma(savevideo) - exact_luma).mean()
    print(f"mean |luma error|: delivered at crf 1 {delivered_error:.2f}/255, SaveVideo's own file {savevideo_error:.2f}/255")
    assert delivered_error < 1.0 and savevideo_error > 3 * delivered_error


def test_the_tap_replaces_createvideo_and_savevideo_unless_asked_to_keep_them():
    graph = load_workflow("plumbing_video").graph
    tapped, tap = add_frame_tap(graph, "p")
    assert tap is not None and tapped[tap.node_id]["inputs"]["images"] == graph["3"]["inputs"]["images"]
    assert [node["class_type"] for node in tapped.values()] == ["EmptyImage", "ImageAddNoise", "SaveAnimatedPNG"]
    kept, _ = add_frame_tap(graph, "p", replace_saver=False)
    assert set(kept) == set(graph) | {tap.node_id}
    # A CreateVideo that another node also reads stays; only the SaveVideo goes.
    shared = {**graph, "9": {"class_type": "GetVideoComponents", "inputs": {"video": ["3", 0]}}}
    tapped, _ = add_frame_tap(shared, "p")
    assert "3" in tapped and "4" not in tapped


def test_a_graph_without_createvideo_to_savevideo_or_with_audio_gets_no_tap():
    graph = load_workflow("plumbing_video").graph
    with_audio = {**graph, "3": {**graph["3"], "inputs": {**graph["3"]["inputs"], "audio": ["8", 0]}}}
    assert add_frame_tap(with_audio, "p") == (with_audio, None)
    no_video = {key: node for key, node in graph.items() if node["class_type"] != "SaveVideo"}
    assert add_frame_tap(no_video, "p") == (no_video, None)
