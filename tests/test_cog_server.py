"""The real Cog HTTP server (coglet) with the real predict.py, on the plumbing workflow."""

import pytest

from tests.support.cog_server import CogServer
from tests.support.media import probe_video, write_data_uri

pytestmark = pytest.mark.cog_server


@pytest.fixture(scope="module")
def server(hv_env, tmp_path_factory):
    with CogServer(hv_env, tmp_path_factory.mktemp("cog") / "server.log") as srv:
        yield srv


def test_health_goes_from_starting_to_ready(server):
    body, seen = server.wait_for_status({"READY", "SETUP_FAILED"})
    assert body["status"] == "READY", server.logs()
    # The HTTP server answers while setup boots ComfyUI (seconds): STARTING, then READY, and nothing else.
    assert [status for status in seen if status != "unreachable"] == ["STARTING", "READY"], seen
    assert body["setup"]["status"] == "succeeded"


def test_sync_prediction_returns_a_video_that_decodes(server, tmp_path):
    server.wait_for_status({"READY"})
    response = server.predict({"prompt": "x", "width": 128, "height": 96, "num_frames": 17, "fps": 8, "seed": 1})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded", body
    assert "seed: 1" in body["logs"] and "node 2 ImageAddNoise" in body["logs"]
    video = probe_video(write_data_uri(body["output"], tmp_path / "out.mp4"))
    assert (video.frames, video.width, video.height, video.fps) == (17, 128, 96, 8.0)


@pytest.mark.parametrize(
    "inputs,field",
    [
        ({"prompt": "x", "width": 850}, "width"),
        ({"prompt": "x", "num_frames": 72}, "num_frames"),
        ({"prompt": "x", "steps": 0}, "steps"),
        ({"prompt": "x", "output_format": "avi"}, "output_format"),
        ({"width": 64}, "prompt"),
    ],
)
def test_invalid_inputs_get_422_naming_the_field(server, inputs, field):
    server.wait_for_status({"READY"})
    response = server.predict(inputs)
    assert response.status_code == 422, response.text
    locations = [error["loc"][-1] for error in response.json()["detail"]]
    assert locations == [field]
