"""The real Cog HTTP server (coglet) with the real predict.py, on the plumbing workflow."""

import shutil
import subprocess

import pytest

from local_servers.cog_server import CogServer
from tests.support.doc_commands import served_scripts
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
    # ComfyUI's boot, as a Cog user reads it: no tracebacks and pip advice. The lean boot (HV_BOOT's default) does not
    # start the audio node modules at all, so not even the one harmless torchaudio line of a full boot
    # (HV_BOOT=full: tests/test_boot_log.py) is there.
    setup_logs = body["setup"]["logs"]
    assert not any(noise in setup_logs for noise in ("Traceback", "IMPORT FAILED", "pip install")), setup_logs
    assert [line for line in setup_logs.splitlines() if "torchaudio" in line] == [], setup_logs
    assert sum("host memory:" in line and "pinned memory:" in line for line in setup_logs.splitlines()) == 1, setup_logs


def test_sync_prediction_returns_a_video_that_decodes(server, tmp_path):
    server.wait_for_status({"READY"})
    response = server.predict({"prompt": "x", "width": 128, "height": 96, "num_frames": 17, "fps": 8, "seed": 1})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded", body
    assert "seed: 1" in body["logs"] and "node 2 ImageAddNoise" in body["logs"]
    assert "hv_frames_" not in body["logs"], body["logs"]  # the frame tap's generated node id is ours, not the caller's
    assert "done: 128x96, 17 frames, seed 1 in " in body["logs"].splitlines()[-1], body["logs"]
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


def test_the_documented_curl_commands_run(server, tmp_path):
    """The README's and docs' curl commands against this server (the plumbing workflow stands in for the
    model): each exits 0, the health check says READY, and both decodes give the video that was rendered."""
    if shutil.which("jq") is None or shutil.which("curl") is None:
        pytest.skip("curl and jq are needed")
    scripts = served_scripts()
    assert len(scripts) >= 4, scripts
    server.wait_for_status({"READY"})
    for script in scripts:
        script = script.replace("localhost:5000", f"127.0.0.1:{server.port}")
        done = subprocess.run(["bash", "-o", "pipefail", "-c", script], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"{script}\n{done.stderr}"
        if "/health-check | jq .status" in script:
            assert done.stdout.strip() == '"READY"', done.stdout
    assert (tmp_path / "fox.mp4").read_bytes() == (tmp_path / "fox-py.mp4").read_bytes()
    assert probe_video(tmp_path / "fox.mp4").frames == 49

