"""The Cog HTTP contract and S3 delivery, through the real Cog server (coglet), the real predict.py and a
real S3-protocol server (moto's, on 127.0.0.1).

The server serves a derived plumbing workflow in which `steps` drives a slow, stepping fixture node
(HVTestSlowSteps, 0.1 s a step), so progress, BUSY and cancel can be watched while a prediction runs.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from pathlib import Path

import httpx
import pytest

from local_servers.cog_server import CogServer
from local_servers.s3_server import MotoS3Server
from local_servers.webhooks import WebhookReceiver
from tests.support.graphs import slow_steps_logged, write_slow_workflow
from tests.support.media import probe_video

pytestmark = pytest.mark.cog_server

BUCKET = "videos"
# Random per run, so finding one in a log can only mean it leaked.
ACCESS_KEY = "AKIA" + secrets.token_hex(8).upper()
SECRET_KEY = secrets.token_urlsafe(30)


def cog_env(hv_env, root: Path, s3: MotoS3Server, bucket: str = BUCKET) -> dict[str, str]:
    return {
        **hv_env, "HV_WORKFLOW": "plumbing_slow", "HV_WORKFLOWS_DIR": str(write_slow_workflow(root / "workflows")),
        "HV_OUTPUT_DIR": str(root / "outputs"), "HV_S3_BUCKET": bucket, "HV_S3_ENDPOINT_URL": s3.url,
        "HV_S3_MAX_ATTEMPTS": "2", "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }


def start_cog(env: dict[str, str], log_path: Path) -> CogServer:
    server = CogServer(env, log_path)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        server.env.pop(name, None)  # only the keys this test sets may reach boto3
    return server.__enter__()


@pytest.fixture(scope="module")
def served(hv_env, s3, tmp_path_factory):
    root = tmp_path_factory.mktemp("delivery")
    server = start_cog(cog_env(hv_env, root, s3), root / "server.log")
    try:
        server.wait_until_ready()
        yield server
    finally:
        server.stop()


def repair(s3: MotoS3Server) -> MotoS3Server:
    """Server up, auth off, bucket there, whatever a test broke (a restarted moto starts empty)."""
    if not s3.running:
        s3.start()
    s3.require_auth(False)
    if BUCKET not in [b["Name"] for b in s3.client().list_buckets()["Buckets"]]:
        s3.client().create_bucket(Bucket=BUCKET)
    return s3


@pytest.fixture
def healthy_s3(s3):
    return repair(s3)


def inputs(**overrides):
    return {"prompt": "x", "width": 64, "height": 64, "num_frames": 9, "steps": 1, "fps": 8, "seed": 1, **overrides}


def sync_predict(server: CogServer, **overrides) -> dict:
    response = server.predict_when_ready(inputs(**overrides))
    assert response.status_code == 200, response.text
    return response.json()


def start_async(server: CogServer, webhooks: WebhookReceiver, **overrides) -> str:
    prediction_id = uuid.uuid4().hex
    server.wait_for_status({"READY"}, timeout=60)
    response = server.client.post(
        "/predictions", headers={"Prefer": "respond-async"},
        json={"id": prediction_id, "input": inputs(**overrides), "webhook": f"{webhooks.url}/hook",
              "webhook_events_filter": ["start", "logs", "output", "completed"]},
    )
    assert response.status_code == 202, response.text
    return prediction_id


def object_key(url: str) -> str:
    path = httpx.URL(url).path
    assert path.startswith(f"/{BUCKET}/"), url  # path-style addressing, as MinIO needs
    return path[len(BUCKET) + 2:]


def assert_no_credentials(*texts: str) -> None:
    for text in texts:
        assert SECRET_KEY not in text and ACCESS_KEY not in text


# -- the contract: async, webhooks, progress, BUSY ---------------------------------------------


def test_async_prediction_sends_webhooks_logs_progress_and_returns_an_s3_url(served, webhooks, healthy_s3, tmp_path):
    prediction_id = start_async(served, webhooks, steps=20)  # 20 x 0.1 s
    statuses = set()
    final = None
    deadline = time.monotonic() + 120
    while final is None:
        assert time.monotonic() < deadline, f"no final webhook after 120 s: {webhooks.for_prediction(prediction_id)}"
        statuses.add(served.health()["status"])
        events = webhooks.for_prediction(prediction_id)
        final = next((e for e in events if e["status"] in {"succeeded", "failed", "canceled"}), None)
        time.sleep(0.05)
    assert final["status"] == "succeeded", final
    assert "BUSY" in statuses, statuses

    events = webhooks.for_prediction(prediction_id)
    assert events[0]["status"] == "processing"  # the start event
    running_logs = [e["logs"] for e in events if e["status"] == "processing" and e.get("logs")]
    # Progress reaches the caller while it runs, not only at the end: node names and step i/N.
    assert any("node 9 HVTestSlowSteps" in logs and slow_steps_logged(logs) for logs in running_logs), running_logs
    assert any(slow_steps_logged(logs) and max(slow_steps_logged(logs)) < 20 for logs in running_logs), running_logs
    assert slow_steps_logged(final["logs"]) == list(range(1, 21))
    assert "HVTestSlowSteps" in final["logs"] and "seed: 1" in final["logs"]

    url = final["output"]
    key = object_key(url)
    stored = healthy_s3.client().get_object(Bucket=BUCKET, Key=key)
    stored_bytes = stored["Body"].read()
    assert stored["ContentType"] == "video/mp4"
    assert httpx.get(url).content == stored_bytes  # the returned URL itself serves the same bytes
    video = probe_video(_write(tmp_path / "from_s3.mp4", stored_bytes))
    assert (video.frames, video.width, video.height, video.fps, video.codec) == (9, 64, 64, 8.0, "h264")
    sidecar = json.loads(healthy_s3.client().get_object(Bucket=BUCKET, Key=f"{key}.json")["Body"].read())
    assert sidecar["seed"] == 1 and sidecar["inputs"]["steps"] == 20 and sidecar["video_key"] == key
    assert_no_credentials(final["logs"])


def test_each_prediction_gets_its_own_key_and_leaves_nothing_on_disk(served, healthy_s3):
    outputs = Path(served.env["HV_OUTPUT_DIR"])
    first, second = (sync_predict(served, output_format="webm") for _ in range(2))
    assert first["status"] == second["status"] == "succeeded", (first, second)
    keys = [object_key(body["output"]) for body in (first, second)]
    assert keys[0] != keys[1] and all(key.endswith(".webm") for key in keys)
    assert healthy_s3.client().head_object(Bucket=BUCKET, Key=keys[1])["ContentType"] == "video/webm"
    assert [p.name for p in outputs.iterdir() if p.name != ".work"] == []  # uploaded: the run folders went


def test_cancel_interrupts_comfyui_ends_canceled_and_the_next_prediction_succeeds(served, webhooks, healthy_s3):
    prediction_id = start_async(served, webhooks, steps=100)  # 10 s if nothing stops it
    deadline = time.monotonic() + 60
    while not any(slow_steps_logged(e.get("logs") or "") for e in webhooks.for_prediction(prediction_id)):
        assert time.monotonic() < deadline, webhooks.for_prediction(prediction_id)
        time.sleep(0.05)
    assert served.health()["status"] == "BUSY"
    assert served.client.post(f"/predictions/{prediction_id}/cancel").status_code == 200
    final = webhooks.wait_final(prediction_id)
    assert final["status"] == "canceled", final
    # ComfyUI stopped inside the node: the sampler-like loop never reached its last step.
    assert max(slow_steps_logged(final["logs"])) < 100
    body = sync_predict(served, steps=2)
    assert body["status"] == "succeeded", body
    assert slow_steps_logged(body["logs"]) == [1, 2]


# -- upload failures: the cause named, the video kept -------------------------------------------


def stop_server(s3: MotoS3Server) -> None:
    s3.stop()


def revoke_credentials(s3: MotoS3Server) -> None:
    s3.require_auth(True)


def delete_bucket(s3: MotoS3Server) -> None:
    s3.empty_and_delete(BUCKET)


@pytest.mark.parametrize(
    "inject,cause",
    [(stop_server, "endpoint unreachable: could not connect to http://127.0.0.1:"),
     (revoke_credentials, "bad credentials: bucket 'videos' at http://127.0.0.1:"),
     (delete_bucket, "missing bucket: bucket 'videos' at http://127.0.0.1:")],
    ids=["server-stopped", "bad-credentials", "missing-bucket"],
)
def test_a_failed_upload_fails_the_prediction_naming_the_cause_and_keeps_the_video(
    served, healthy_s3, inject, cause
):
    inject(healthy_s3)
    body = sync_predict(served, num_frames=13)
    assert body["status"] == "failed", body
    error = body["error"]
    assert cause in error, error
    kept = re.search(r"The video is kept at (\S+\.mp4):", error)
    assert kept, error
    video = Path(kept.group(1))
    assert probe_video(video).frames == 13
    assert_no_credentials(error, body["logs"])

    repair(healthy_s3)
    body = sync_predict(served)
    assert body["status"] == "succeeded", body
    assert video.is_file(), "a kept video must outlive the next prediction's clean-up"


def test_no_credential_appears_anywhere_in_the_server_log(served, healthy_s3):
    """After everything above (uploads, each failure, a cancel) has gone through this server's log."""
    assert sync_predict(served)["status"] == "succeeded"
    log = served.log_path.read_text(errors="replace")
    assert "uploaded s3://" in log  # the log did see the uploads
    assert_no_credentials(log)


# -- setup -------------------------------------------------------------------------------------


def test_a_missing_bucket_fails_setup_with_what_to_do(hv_env, healthy_s3, tmp_path):
    server = start_cog(cog_env(hv_env, tmp_path, healthy_s3, bucket="no-such-bucket"), tmp_path / "server.log")
    try:
        body, seen = server.wait_for_status({"READY", "SETUP_FAILED"})
        assert body["status"] == "SETUP_FAILED", body
        logs = body["setup"]["logs"]
        assert "missing bucket: bucket 'no-such-bucket'" in logs and "create it or fix HV_S3_BUCKET" in logs, logs
        assert_no_credentials(server.log_path.read_text(errors="replace"))
        refused = server.predict(inputs())  # coglet serves no prediction after a failed setup
        assert refused.status_code == 503 and refused.json()["status"] == "failed", refused.text
        # coglet answers a POST after SETUP_FAILED itself, never calling predict(), with a message meant for
        # STARTING: docs/serving.md tells the caller to read setup.logs from /health-check instead.
        refused = server.predict(inputs())
        assert refused.status_code == 503 and refused.json()["status"] == "failed", refused.text
        assert "Setup has not finished yet" in refused.json()["error"], refused.text
    finally:
        server.stop()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
