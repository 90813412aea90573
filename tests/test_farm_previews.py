"""The farm while it renders a real sampler: the latest preview in the bucket, the ETA on the prediction, the
rate-limited `logs` webhook, and cancel after a preview. A real PostgreSQL, moto's S3, one real worker process
rendering the tiny real v1 DiT through the production graph (each model call slowed by the fixture node
HVTestSlowModel, so the render lasts long enough to watch), the gateway as a real HTTP server.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By

from comfy_runtime.farm.client import FarmClient
from comfy_runtime.farm.config import FarmSettings
from comfy_runtime.farm.tokens import create as create_token
from local_servers.farm_processes import GatewayProcess, WorkerProcess
from tests.support.browser import card, headless_chromium, sign_in, wait_for
from tests.support.farm import wait_until
from tests.support.media import probe_video
from tests.support.tiny_hunyuan15 import slow_model, write_tiny_family, write_tiny_models

BUCKET = "farm-previews"
PREFIX = "hv/"
LOGS_EVERY = 1.0  # HV_FARM_LOGS_WEBHOOK_SECONDS
SECONDS_PER_STEP = 0.15
EVERY = 3  # HV_PREVIEW_EVERY


def job(**overrides) -> dict:
    return {"prompt": "a red fox running through fresh snow", "width": 64, "height": 64, "num_frames": 9,
            "steps": 30, "seed": 5, **overrides}


def write_slow_workflows(target: Path) -> Path:
    """The tiny v1 family, each model call slowed (HVTestSlowModel after UNETLoader)."""
    return slow_model(write_tiny_family(target, "hunyuan_t2v"), "hunyuan_t2v", SECONDS_PER_STEP)


@pytest.fixture(scope="module")
def farm(hv_env, session_dirs, runtime, pg, s3, tmp_path_factory):
    write_tiny_models(session_dirs["models"])
    root = tmp_path_factory.mktemp("farm-previews")
    env = {
        **hv_env, "HV_WORKFLOW": "hunyuan_t2v", "HV_WORKFLOWS_DIR": str(write_slow_workflows(root / "workflows")),
        "HV_IMAGE_TO_VIDEO": "false", "HV_PREVIEW_EVERY": str(EVERY),
        "HV_OUTPUT_DIR": str(root / "outputs"), "HV_S3_BUCKET": BUCKET, "HV_S3_ENDPOINT_URL": s3.url,
        "HV_S3_PREFIX": PREFIX, "AWS_ACCESS_KEY_ID": "farm-test", "AWS_SECRET_ACCESS_KEY": "farm-test",
        "HV_FARM_DATABASE_URL": pg.url, "HV_FARM_HEARTBEAT_SECONDS": "0.5", "HV_FARM_STALLED_SECONDS": "10",
        "HV_FARM_POLL_SECONDS": "1", "HV_FARM_WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
        "HV_FARM_LOGS_WEBHOOK_SECONDS": str(LOGS_EVERY),
    }
    with FarmClient(FarmSettings(database_url=pg.url)) as client:
        client.ensure_schema()
        with client.store.connection() as conn:  # the gateway requires a token (tests/test_farm_tokens.py)
            token = create_token(conn, "previews-tests").token
    gateway = GatewayProcess(env, root / "gateway.log").start()
    worker = WorkerProcess(env, root / "worker.log").start()
    try:
        gateway.wait_ready()
        worker.wait_ready()
        with httpx.Client(base_url=gateway.url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as http:
            yield http
    finally:
        worker.stop()
        gateway.stop()


def keys_of(s3, prediction_id: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}farm/{prediction_id}/")
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_the_preview_and_eta_are_on_the_prediction_while_it_renders_and_logs_webhooks_are_rate_limited(
        farm, s3, webhooks, tmp_path):
    prediction_id = uuid.uuid4().hex
    accepted = farm.post("/predictions", headers={"Prefer": "respond-async"}, json={
        "id": prediction_id, "input": job(), "webhook": f"{webhooks.url}/hook",
        "webhook_events_filter": ["logs", "completed"]})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["webhook_events_filter"] == ["logs", "completed"]
    seen, fetched, etas = [], {}, []
    while (prediction := farm.get(f"/predictions/{prediction_id}").json())["status"] not in ("succeeded", "failed"):
        live = prediction["farm"]
        if live["eta_seconds"] is not None:
            etas.append(live["eta_seconds"])
        preview = live["preview"]
        if preview is not None and preview["step"] not in fetched:
            assert preview["total"] == 30 and preview["step"] % EVERY == 0, preview
            answer = httpx.get(preview["url"], timeout=30)  # fetchable while the job renders
            if answer.status_code == 200:  # a newer preview may have replaced the object just now: the next GET names it
                (tmp_path / f"p{preview['step']}.mp4").write_bytes(answer.content)
                fetched[preview["step"]] = probe_video(tmp_path / f"p{preview['step']}.mp4")
        seen.append(prediction["status"])
        time.sleep(0.1)
    assert prediction["status"] == "succeeded", prediction["error"]
    assert len(fetched) >= 2, fetched
    assert {(p.frames, p.width, p.height) for p in fetched.values()} == {(3, 16, 16)}
    # The ETA counts down: overall by far, and poll to poll nearly always (a step slowed by a busy machine may
    # raise the measured step time, and so the ETA, a little).
    assert len(etas) >= 5 and etas[-1] < etas[0] / 3, etas
    pairs = list(zip(etas, etas[1:], strict=False))
    assert sum(later <= earlier * 1.1 for earlier, later in pairs) >= 0.8 * len(pairs), etas
    # Succeeded: the preview object is gone (the video is the result), and the prediction no longer names it.
    assert prediction["farm"]["preview"] is None and prediction["farm"]["eta_seconds"] is None
    assert keys_of(s3, prediction_id) == sorted([prediction["farm"]["object_key"], prediction["farm"]["object_key"] + ".json"])
    # The `logs` webhooks: Cog's shape, while processing, at most one per LOGS_EVERY, with progress and the preview.
    final = webhooks.wait_final(prediction_id)
    logs_events = [e for e in webhooks.for_prediction(prediction_id) if e["status"] == "processing"]
    assert len(logs_events) >= 2, logs_events
    gaps = [b["received_at"] - a["received_at"] for a, b in zip(logs_events, logs_events[1:], strict=False)]
    render_seconds = final["received_at"] - logs_events[0]["received_at"]
    assert min(gaps) >= LOGS_EVERY * 0.9 and len(logs_events) <= render_seconds / LOGS_EVERY + 2, gaps
    assert any(e["farm"]["preview"] and e["farm"]["preview"]["url"] for e in logs_events), logs_events
    # Each says where the render is (the first may come before the first node; a node just started has no step
    # yet); the sampler's carry its step.
    progress = [e["farm"]["progress"] or {} for e in logs_events]
    assert all(p.get("node") for p in progress[1:]) and any(p.get("step") for p in progress), progress
    print(f"farm: {len(fetched)} previews fetched while rendering (steps {sorted(fetched)}); ETA seen "
          f"{etas[0]:.1f} s -> {etas[-1]:.1f} s over {len(etas)} polls; {len(logs_events)} logs webhooks, "
          f"gaps {min(gaps):.2f}-{max(gaps):.2f} s (limit {LOGS_EVERY:g} s)")


def test_cancel_after_the_first_preview_ends_canceled_and_keeps_the_preview(farm, s3):
    prediction_id = farm.post("/predictions", headers={"Prefer": "respond-async"},
                              json={"input": job(steps=100, seed=6)}).json()["id"]
    first = wait_until(lambda: farm.get(f"/predictions/{prediction_id}").json()["farm"]["preview"], timeout=120,
                       message="the first preview")
    assert farm.post(f"/predictions/{prediction_id}/cancel").status_code == 200
    ended = wait_until(lambda: (p := farm.get(f"/predictions/{prediction_id}").json())["status"] in
                       {"canceled", "succeeded", "failed"} and p, timeout=60)
    assert ended["status"] == "canceled", ended
    assert ended["farm"]["preview"]["step"] >= first["step"] and ended["farm"]["eta_seconds"] is None
    # Canceled: the last preview stays (what the client stopped), one object beside no video.
    assert keys_of(s3, prediction_id) == [f"{PREFIX}farm/{prediction_id}/preview.mp4"]
    assert httpx.get(ended["farm"]["preview"]["url"], timeout=30).status_code == 200


def test_the_jobs_page_plays_the_live_preview_while_the_job_renders(farm):
    """The page (tests/test_farm_page.py tests the rest of it) shows what the worker uploads: the latest preview as
    a looping <video> that the browser decodes at the preview's size, then nothing once the job has ended."""
    with headless_chromium() as driver:
        sign_in(driver, str(farm.base_url), farm.headers["Authorization"].removeprefix("Bearer "))
        prediction_id = farm.post("/predictions", headers={"Prefer": "respond-async"},
                                  json={"input": job(steps=60, seed=7)}).json()["id"]
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'.job[data-id="{prediction_id}"]'), timeout=30)
        played = wait_for(driver, lambda d: d.execute_script(
            "const v = arguments[0].querySelector('video.preview');"
            "return !v.hidden && v.readyState >= 2 && v.dataset.step ? [v.videoWidth, v.videoHeight, +v.dataset.step,"
            " v.currentSrc] : null", card(d, prediction_id)), timeout=120)
        width, height, step, source = played
        assert (width, height) == (16, 16) and step % EVERY == 0, played
        assert f"farm/{prediction_id}/preview.mp4" in source, source
        assert farm.post(f"/predictions/{prediction_id}/cancel").status_code == 200
        wait_for(driver, lambda d: card(d, prediction_id).get_attribute("data-status") == "canceled", timeout=60)
