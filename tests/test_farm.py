"""The render farm end to end: a real PostgreSQL (initdb + pg_ctl on 127.0.0.1), real worker processes booting
the real ComfyUI in-process on the CPU, the gateway as a real HTTP server, moto's S3 server for delivery.

Two worker processes are shared by the tests in this module (each boots ComfyUI once); the fault tests at
the end (database restart, SIGKILL, SIGTERM) run last because they kill them.
"""

from __future__ import annotations

import re

import httpx
import psycopg
import pytest
import yaml

from comfy_runtime.farm.client import FarmClient, InvalidInput
from comfy_runtime.farm.config import FarmSettings
from comfy_runtime.farm.schema import backlog_query
from tests.contract_helpers import WebhookReceiver
from tests.helpers import PROJECT_ROOT, probe_video
from tests.s3_server import MotoS3Server
from tests.support.farm import FAIL_SEED, GatewayProcess, WorkerProcess, wait_until, write_farm_workflow
from tests.support.postgres import PostgresServer

BUCKET = "farm-videos"
PREFIX = "hv/"
SCALEDOBJECT = PROJECT_ROOT / "deploy" / "k8s" / "components" / "farm" / "scaledobject.yaml"


@pytest.fixture(scope="module")
def pg():
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with MotoS3Server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture(scope="module")
def webhooks():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def farm_env(hv_env, pg, s3, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("farm")
    return {
        **hv_env, "HV_WORKFLOW": "plumbing_farm", "HV_WORKFLOWS_DIR": str(write_farm_workflow(root / "workflows")),
        "HV_OUTPUT_DIR": str(root / "outputs"), "HV_S3_BUCKET": BUCKET, "HV_S3_ENDPOINT_URL": s3.url,
        "HV_S3_PREFIX": PREFIX, "AWS_ACCESS_KEY_ID": "farm-test", "AWS_SECRET_ACCESS_KEY": "farm-test",
        "HV_FARM_DATABASE_URL": pg.url, "HV_FARM_HEARTBEAT_SECONDS": "0.5", "HV_FARM_STALLED_SECONDS": "5",
        "HV_FARM_POLL_SECONDS": "1", "HV_FARM_MAX_ATTEMPTS": "3", "HV_FARM_SYNC_WAIT_SECONDS": "20",
        "HV_FARM_WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
    }


@pytest.fixture(scope="module")
def client(farm_env):
    settings = FarmSettings(database_url=farm_env["HV_FARM_DATABASE_URL"], webhook_allowed_hosts=["127.0.0.1"])
    with FarmClient(settings) as farm:
        farm.ensure_schema()
        yield farm


@pytest.fixture(scope="module")
def workers(farm_env, client, tmp_path_factory):
    logs = tmp_path_factory.mktemp("workers")
    started = [WorkerProcess(farm_env, logs / f"worker{i}.log").start() for i in range(2)]
    try:
        for worker in started:
            worker.wait_ready()
        yield started
    finally:
        for worker in started:
            worker.stop()


@pytest.fixture(scope="module")
def gateway(farm_env, client, tmp_path_factory):
    process = GatewayProcess(farm_env, tmp_path_factory.mktemp("gateway") / "gateway.log").start()
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def job(**overrides) -> dict:
    return {"prompt": "a fox", "width": 64, "height": 64, "num_frames": 5, "steps": 1, "fps": 8, **overrides}


def video_keys(s3: MotoS3Server, prediction_id: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}farm/{prediction_id}/")
    return [item["Key"] for item in listed.get("Contents", []) if not item["Key"].endswith(".json")]


def step_of(client: FarmClient, prediction_id: str) -> int:
    progress = client.get(prediction_id)["farm"]["progress"] or {}
    return progress.get("step", 0)


def steps_logged(logs: str) -> list[int]:
    return [int(step) for step in re.findall(r"HVTestSlowSteps step (\d+)/\d+", logs)]


def test_twenty_jobs_across_two_workers_each_delivered_once(workers, client, s3, tmp_path):
    submitted = [client.submit(job(seed=index)) for index in range(20)]
    ended = [client.wait(p["id"], timeout=180) for p in submitted]
    assert [p["status"] for p in ended] == ["succeeded"] * 20, [p["error"] for p in ended]
    for prediction in ended:
        keys = video_keys(s3, prediction["id"])
        assert keys == [prediction["farm"]["object_key"]], keys  # exactly one object per job
        assert prediction["output"] and f"/{BUCKET}/{keys[0]}" in prediction["output"]
        assert prediction["metrics"]["predict_time"] > 0 and "comfyui_seconds" in prediction["metrics"]
        assert prediction["farm"]["seed"] == prediction["input"]["seed"]
    # Both worker processes took jobs, and nothing is left in the queue.
    assert {p["farm"]["worker"] for p in ended} == {w.name for w in workers}
    assert client.backlog() == 0
    downloaded = tmp_path / "one.mp4"
    downloaded.write_bytes(httpx.get(ended[0]["output"], timeout=30).content)
    assert probe_video(downloaded).frames == 5


def keda_query() -> str:
    scaled = yaml.safe_load(SCALEDOBJECT.read_text())
    (trigger,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "postgresql"]
    return trigger["metadata"]["query"]


def test_cancel_running_and_queued_and_the_keda_backlog(workers, client, webhooks, pg):
    long_job = job(steps=100)  # 100 steps x 0.1 s: 10 s if nothing stops it
    hook = {"webhook": f"{webhooks.url}/hook"}
    a, b = client.submit(long_job, **hook), client.submit(long_job)
    wait_until(lambda: step_of(client, a["id"]) >= 3 and step_of(client, b["id"]) >= 1, message="both rendering")
    queued = client.submit(job(), **hook)  # both workers are busy: this one waits
    # The trigger's SQL, as the ScaledObject ships it, against the real database: 2 running + 1 queued.
    assert keda_query() == backlog_query("hv-render")
    with psycopg.connect(pg.url) as conn:
        assert conn.execute(keda_query()).fetchone()[0] == 3

    assert client.cancel(queued["id"])["status"] == "canceled"
    final = webhooks.wait_final(queued["id"])
    assert final["status"] == "canceled"
    assert client.get(queued["id"])["started_at"] is None and client.get(queued["id"])["farm"]["worker"] is None

    client.cancel(a["id"])
    ended = client.wait(a["id"], timeout=30)
    assert ended["status"] == "canceled", ended
    assert webhooks.wait_final(a["id"])["status"] == "canceled"
    at_cancel = int(re.search(r"canceled at step (\d+)/100", ended["logs"])[1])
    # Interrupted within one step of the cancel: the next progress hook is where it landed.
    assert steps_logged(ended["logs"])[-1] <= at_cancel + 1 < 100

    # a's worker is free again while b's is still busy: the next job must go to a's worker.
    after = client.wait(client.submit(job(seed=7))["id"], timeout=60)
    assert after["status"] == "succeeded" and after["farm"]["worker"] == ended["farm"]["worker"]
    client.cancel(b["id"])
    assert client.wait(b["id"], timeout=30)["status"] == "canceled"
    with psycopg.connect(pg.url) as conn:  # the queue's own view agrees, in SQL
        rows = dict(conn.execute("SELECT id, queue_status FROM hv_farm_jobs WHERE id = ANY(%s)",
                                 ([a["id"], queued["id"]],)).fetchall())
    assert rows == {a["id"]: "aborted", queued["id"]: "cancelled"}
    assert client.get(queued["id"])["farm"]["worker"] is None  # it never started
    assert client.backlog() == 0


def test_failing_render_fails_with_node_and_message_and_the_worker_stays_healthy(workers, client):
    failed = client.wait(client.submit(job(seed=FAIL_SEED))["id"], timeout=60)
    assert failed["status"] == "failed"
    assert "HVTestFailOnValue" in failed["error"] and f"injected failure for value {FAIL_SEED}" in failed["error"]
    with client.store.connection() as conn:
        assert conn.execute("SELECT queue_status FROM hv_farm_jobs WHERE id = %s",
                            (failed["id"],)).fetchone()["queue_status"] == "failed"
    after = [client.submit(job(seed=seed)) for seed in (1, 2)]
    assert [client.wait(p["id"], timeout=60)["status"] for p in after] == ["succeeded"] * 2
    assert all(worker.alive for worker in workers)


def test_client_refuses_bad_input_before_queueing(client):
    before = client.store.count()
    with pytest.raises(InvalidInput) as refused:
        client.submit(job(width=65))
    assert refused.value.problems[0]["loc"] == ["body", "input", "width"]
    assert "multiple of 16" in str(refused.value)
    assert client.store.count() == before
