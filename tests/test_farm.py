"""The render farm end to end: a real PostgreSQL (initdb + pg_ctl on 127.0.0.1), real worker processes booting
the real ComfyUI in-process on the CPU, the gateway as a real HTTP server, moto's S3 server for delivery.

Two worker processes are shared by the tests in this module (each boots ComfyUI once); the fault tests at
the end (database restart, SIGKILL, SIGTERM) run last because they kill them.
"""

from __future__ import annotations

import os
import re
import signal
import uuid

import httpx
import psycopg
import pytest
import yaml

from comfy_runtime.farm.client import FarmClient, InvalidInput
from comfy_runtime.farm.config import FarmSettings
from comfy_runtime.farm.schema import backlog_query
from local_servers.farm_processes import WorkerProcess
from local_servers.s3_server import MotoS3Server
from tests.support.farm import FAIL_SEED, gateway_with_token, job, wait_until, write_farm_workflow
from tests.support.media import probe_video
from tests.support.paths import PROJECT_ROOT

BUCKET = "farm-videos"
PREFIX = "hv/"
SCALEDOBJECT = PROJECT_ROOT / "deploy" / "k8s" / "components" / "farm" / "scaledobject.yaml"


@pytest.fixture(scope="module")
def farm_env(hv_env, pg, s3, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("farm")
    return {
        **hv_env, "HV_WORKFLOW": "plumbing_farm", "HV_WORKFLOWS_DIR": str(write_farm_workflow(root / "workflows")),
        "HV_OUTPUT_DIR": str(root / "outputs"), "HV_S3_BUCKET": BUCKET, "HV_S3_ENDPOINT_URL": s3.url,
        "HV_S3_PREFIX": PREFIX, "AWS_ACCESS_KEY_ID": "farm-test", "AWS_SECRET_ACCESS_KEY": "farm-test",
        "HV_FARM_DATABASE_URL": pg.url, "HV_FARM_HEARTBEAT_SECONDS": "0.5", "HV_FARM_STALLED_SECONDS": "5",
        "HV_FARM_POLL_SECONDS": "1", "HV_FARM_MAX_ATTEMPTS": "3", "HV_FARM_SYNC_WAIT_SECONDS": "8",
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
    with gateway_with_token(farm_env, client, tmp_path_factory.mktemp("gateway") / "gateway.log", "farm-tests") as process:
        yield process


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

    running = client.get(a["id"])
    assert running["status"] == "processing" and running["farm"]["attempts"] == 1, running["farm"]  # this run counts
    assert running["webhook_events_filter"] == ["start", "logs", "completed"]  # what the farm sends, not Cog's whole list
    canceling = client.cancel(a["id"])  # Cog's convention: the prediction as it is, here marked as being canceled
    assert canceling["status"] == "canceled" or (canceling["status"] == "processing"
                                                 and canceling["farm"]["cancel_requested"]), canceling
    ended = client.wait(a["id"], timeout=30)
    assert ended["farm"]["cancel_requested"] is False and ended["farm"]["attempts"] == 1, ended["farm"]
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
    # procrastinate's line for the canceled running job is one line naming the cancel, not a JobAborted traceback
    aborted = [m for w in workers for m in re.finditer(r".*ended with status: Aborted.*\n(.*)", w.logs(tail=None))]
    assert aborted and all("JobAborted" in m[0] and "Traceback" not in m[1] for m in aborted), aborted


def test_a_worker_whose_upload_fails_names_the_real_fix_and_keeps_nothing(farm_env, client, s3, tmp_path):
    bucket, queue = "farm-doomed", "hv-doomed"
    s3.client().create_bucket(Bucket=bucket)
    outputs = tmp_path / "outputs"
    env = {**farm_env, "HV_S3_BUCKET": bucket, "HV_FARM_QUEUE": queue, "HV_OUTPUT_DIR": str(outputs)}
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        s3.client().delete_bucket(Bucket=bucket)  # the storage goes away after the worker's boot check
        settings = FarmSettings(database_url=farm_env["HV_FARM_DATABASE_URL"], queue=queue)
        with FarmClient(settings) as doomed:
            ended = doomed.wait(doomed.submit(job(seed=11))["id"], timeout=120)
    finally:
        worker.stop()
    assert ended["status"] == "failed", ended
    assert "missing bucket" in ended["error"] and "HV_S3_BUCKET" in ended["error"], ended["error"]
    assert "unset HV_S3_BUCKET" not in ended["error"] and "submit it again with seed=11" in ended["error"]
    assert not [path for path in outputs.rglob("*") if path.is_file()], list(outputs.rglob("*"))


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


def test_a_job_whose_worker_vanished_runs_again_then_fails_with_the_reason_when_out_of_attempts(
        farm_env, client, webhooks, pg):
    """The stalled-job check, on its own queue (the shared workers do not take from it): a job held by a
    worker whose heartbeat stopped goes back to the queue, and past HV_FARM_MAX_ATTEMPTS it fails, saying why."""
    import asyncio

    from comfy_runtime.farm.worker import FarmWorker
    from comfy_runtime.settings import Settings

    settings = FarmSettings(database_url=pg.url, queue="stall-test", max_attempts=2, stalled_seconds=5,
                            webhook_allowed_hosts=["127.0.0.1"])
    with FarmClient(settings) as stall_client:
        submitted = stall_client.submit(job(), webhook=f"{webhooks.url}/hook")
    with psycopg.connect(pg.url, autocommit=True) as conn:
        dead = conn.execute("INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour') "
                            "RETURNING id").fetchone()[0]

        def taken_by_the_dead_worker():  # what fetch_job does, for a worker that then vanished
            conn.execute("UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s WHERE id = %s",
                         (dead, submitted["farm"]["job_id"]))

        async def stall_check() -> list[int]:
            worker = FarmWorker(settings, Settings())
            await worker.connect()
            try:
                return await worker.requeue_stalled()
            finally:
                await worker.disconnect()

        taken_by_the_dead_worker()
        assert asyncio.run(stall_check()) == [submitted["farm"]["job_id"]]
        requeued = client.get(submitted["id"])
        assert requeued["farm"]["queue_status"] == "todo" and requeued["farm"]["attempts"] == 1
        assert "stopped heartbeating; re-queued (attempt 2 of at most 2)" in requeued["logs"]

        taken_by_the_dead_worker()
        assert asyncio.run(stall_check()) == [submitted["farm"]["job_id"]]
        failed = client.get(submitted["id"])
        assert failed["status"] == "failed" and failed["farm"]["queue_status"] == "failed"
        assert "stopped heartbeating" in failed["error"] and "HV_FARM_MAX_ATTEMPTS=2" in failed["error"]
        assert webhooks.wait_final(submitted["id"])["status"] == "failed"
        assert asyncio.run(stall_check()) == []  # nothing left to act on
        conn.execute("DELETE FROM procrastinate_workers WHERE id = %s", (dead,))


# ---------------------------------------------------------------------------------------------
# the gateway, through a real HTTP client


def test_gateway_refuses_bad_input_with_422_naming_the_field_and_queues_nothing(gateway, client):
    before = client.store.count()
    with httpx.Client(base_url=gateway.url, timeout=30, headers=gateway.headers) as http:
        refused = http.post("/predictions", json={"input": job(num_frames=6)})
        assert refused.status_code == 422, refused.text
        (problem,) = refused.json()["detail"]
        assert problem["loc"] == ["body", "input", "num_frames"] and "4k+1" in problem["msg"]
        unknown = http.post("/predictions", json={"input": job(colour="red")})
        assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "input", "colour"]
        assert unknown.json()["detail"][0]["msg"].startswith("colour is not an input: use prompt, ")
        ranged = http.post("/predictions", json={"input": job(steps=0)}).json()["detail"][0]
        assert ranged["msg"] == "steps=0 is out of range: use 1-100" and "input" not in ranged
        hook = http.post("/predictions", json={"input": job(), "webhook": "http://169.254.169.254/latest/meta-data"})
        assert hook.status_code == 422 and hook.json()["detail"][0]["loc"] == ["body", "webhook"]
        assert http.post("/predictions", json={"input": job(), "webhook": 42}).json()["detail"][0]["loc"] == [
            "body", "webhook"]
        events = http.post("/predictions", json={"input": job(), "webhook_events_filter": ["done"]})
        assert events.status_code == 422 and events.json()["detail"][0]["loc"] == ["body", "webhook_events_filter"]
        assert http.post("/predictions", json={"prompt": "no input wrapper"}).json()["detail"][0]["loc"] == [
            "body", "input"]
        assert http.post("/predictions", content=b"not json").status_code == 422
    assert client.store.count() == before


def test_gateway_speaks_cogs_prediction_api(workers, gateway, webhooks, s3, tmp_path):
    with httpx.Client(base_url=gateway.url, timeout=60, headers=gateway.headers) as http:
        assert http.get("/health-check").json()["status"] == "READY"
        # async + webhook: 202 at once, then start and completed webhooks in Cog's shape
        prediction_id = uuid.uuid4().hex
        accepted = http.post("/predictions", headers={"Prefer": "respond-async"}, json={
            "id": prediction_id, "input": job(seed=11), "webhook": f"{webhooks.url}/hook?token=abc",
            "webhook_events_filter": ["start", "completed"]})
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["id"] == prediction_id and accepted.json()["status"] == "starting"
        final = webhooks.wait_final(prediction_id)
        assert final["status"] == "succeeded" and final["path"] == "/hook?token=abc", final
        events = webhooks.for_prediction(prediction_id)
        assert [e["status"] for e in events] == ["processing", "succeeded"], events
        assert {"id", "input", "output", "error", "logs", "status", "created_at", "started_at", "completed_at",
                "metrics"} <= final.keys()
        assert final["input"] == job(seed=11) and final["metrics"]["predict_time"] > 0
        got = http.get(f"/predictions/{prediction_id}").json()
        assert got["status"] == "succeeded" and got["output"] == final["output"], got
        video = tmp_path / "gateway.mp4"
        video.write_bytes(httpx.get(got["output"], timeout=30).content)
        assert probe_video(video).frames == 5
        assert video_keys(s3, prediction_id) == [got["farm"]["object_key"]]

        # the same id again: POST refuses (409), PUT with the same input answers the existing prediction, PUT with
        # another input is a conflict (409 naming the field), not the old prediction passed off as the new one's
        assert http.post("/predictions", json={"id": prediction_id, "input": job()}).status_code == 409
        again = http.put(f"/predictions/{prediction_id}", json={"input": job(seed=11)})
        assert again.status_code == 200 and again.json()["output"] == got["output"], again.text
        other = http.put(f"/predictions/{prediction_id}", json={"input": job()})
        assert other.status_code == 409 and "differs in seed" in other.json()["detail"][0]["msg"], other.text

        # sync: a short render comes back finished in the same call
        done = http.post("/predictions", json={"input": job(seed=12)})
        assert done.status_code == 200 and done.json()["status"] == "succeeded", done.text

        # sync, but longer than the gateway waits (HV_FARM_SYNC_WAIT_SECONDS=8; 100 steps of 0.1 s): 202 with the id
        slow = http.post("/predictions", json={"input": job(steps=100)})
        assert slow.status_code == 202 and slow.json()["status"] in {"starting", "processing"}, slow.text
        running = slow.json()
        assert slow.headers["Location"] == f"/predictions/{running['id']}"
        # cancel through the gateway, while it renders
        wait_until(lambda: http.get(f"/predictions/{running['id']}").json()["farm"]["progress"], message="rendering")
        assert http.post(f"/predictions/{running['id']}/cancel").status_code == 200
        ended = wait_until(lambda: (p := http.get(f"/predictions/{running['id']}").json())["status"] in
                           {"canceled", "succeeded", "failed"} and p, timeout=30)
        assert ended["status"] == "canceled", ended
        assert http.get("/predictions/nope").status_code == 404
        assert http.post("/predictions/nope/cancel").status_code == 404



def test_the_jobs_cli_submits_waits_shows_and_refuses_bad_input(workers, farm_env):
    import json
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "comfy_runtime", "jobs", *args], cwd=PROJECT_ROOT,
                              env={**os.environ, **farm_env}, capture_output=True, text=True, timeout=120)

    done = cli("submit", "-i", "prompt=a fox in snow", "-i", "width=64", "-i", "height=64", "-i", "num_frames=5",
               "-i", "seed=5", "--wait", "--timeout", "60")
    assert done.returncode == 0, done.stderr
    assert "Deferred" not in done.stderr and "Adding tasks" not in done.stderr, done.stderr  # quiet without -v
    prediction = json.loads(done.stdout)
    assert prediction["status"] == "succeeded" and prediction["input"]["prompt"] == "a fox in snow"
    shown = cli("status", prediction["id"])
    assert shown.returncode == 0 and json.loads(shown.stdout)["output"] == prediction["output"]
    assert cli("wait", prediction["id"]).returncode == 0
    refused = cli("submit", "-i", "prompt=x", "-i", "width=65")
    assert refused.returncode == 2 and "width=65 is not allowed" in refused.stderr and not refused.stdout
    loud = cli("submit", "-v", "-i", "prompt=x", "-i", "width=64", "-i", "height=64", "-i", "num_frames=5")
    assert loud.returncode == 0 and "Deferred" in loud.stderr, loud.stderr
    assert cli("wait", json.loads(loud.stdout)["id"], "--timeout", "60").returncode == 0  # leaves the queue empty
    unknown = cli("status", "no-such-id")
    assert unknown.returncode == 1 and "no prediction 'no-such-id'" in unknown.stderr


def test_a_worker_on_the_tiny_dit_graph_renders_through_the_real_sampler(farm_env, session_dirs, runtime, pg, s3,
                                                                           tmp_path):
    """The production t2v graph with a tiny real DiT (tests/support/tiny_hunyuan.py) behind a worker of its own, on
    its own queue: the job's progress is the real sampler's steps, and the video decodes."""
    from tests.support.tiny_hunyuan import TINY_DIT_NAME, write_tiny_dit, write_tiny_workflows

    write_tiny_dit(session_dirs["models"] / "diffusion_models" / TINY_DIT_NAME, seed=0)
    env = {**farm_env, "HV_WORKFLOW": "hunyuan_t2v", "HV_FARM_QUEUE": "tiny-dit", "HV_IMAGE_TO_VIDEO": "false",
           "HV_WORKFLOWS_DIR": str(write_tiny_workflows(tmp_path / "workflows"))}
    worker = WorkerProcess(env, tmp_path / "tiny-worker.log").start()
    try:
        worker.wait_ready()
        with FarmClient(FarmSettings(database_url=pg.url, queue="tiny-dit")) as tiny:
            done = tiny.wait(tiny.submit({**job(steps=2, seed=1234), "prompt": "a red fox in snow"})["id"], timeout=120)
    finally:
        worker.stop()
    assert done["status"] == "succeeded", done["error"]
    assert done["farm"]["worker"] == worker.name
    assert re.findall(r"SamplerCustomAdvanced step (\d)/2", done["logs"]) == ["1", "2"]
    assert done["farm"]["progress"]["node"]  # the last node the run reported
    video = tmp_path / "tiny.mp4"
    video.write_bytes(httpx.get(done["output"], timeout=30).content)
    probe = probe_video(video)
    assert (probe.frames, probe.width, probe.height) == (5, 64, 64)
    assert video_keys(s3, done["id"]) == [done["farm"]["object_key"]]

# ---------------------------------------------------------------------------------------------
# faults: these run last, they take the shared workers down


def test_postgres_restarted_mid_render_the_job_completes_and_nothing_is_lost(workers, client, pg, s3):
    rendering = client.submit(job(steps=40, seed=21))  # 4 s
    wait_until(lambda: step_of(client, rendering["id"]) >= 5, message="rendering")
    pg.restart()  # every connection is cut; the server is back on the same port
    ended = client.wait(rendering["id"], timeout=90)
    assert ended["status"] == "succeeded", ended
    assert video_keys(s3, rendering["id"]) == [ended["farm"]["object_key"]]
    # The restart did reach the workers: a LISTEN connection or a heartbeat failed, and they carried on.
    signs = ("LISTEN connection lost", "heartbeat failed", "not recorded")
    assert all(any(sign in worker.logs(tail=None) for sign in signs) for worker in workers), [w.logs() for w in workers]
    # The workers reconnected: new jobs run on both, and the queue agrees nothing is pending.
    after = [client.submit(job(seed=seed)) for seed in (22, 23, 24, 25)]
    assert [client.wait(p["id"], timeout=90)["status"] for p in after] == ["succeeded"] * 4
    assert all(worker.alive for worker in workers)
    assert client.backlog() == 0


def test_sigkill_mid_render_the_job_is_rerun_by_the_other_worker_and_delivered_once(workers, client, s3):
    victim_job = client.submit(job(steps=40, seed=31))
    wait_until(lambda: client.get(victim_job["id"])["farm"]["worker"] and step_of(client, victim_job["id"]) >= 3,
               message="rendering")
    victim_name = client.get(victim_job["id"])["farm"]["worker"]
    (victim,) = [w for w in workers if w.name == victim_name]
    (survivor,) = [w for w in workers if w is not victim]
    victim.kill()
    ended = client.wait(victim_job["id"], timeout=120)
    assert ended["status"] == "succeeded", ended
    assert ended["farm"]["worker"] == survivor.name
    assert ended["farm"]["attempts"] >= 1 and "stopped heartbeating; re-queued" in ended["logs"]
    assert f"attempt 2 on worker {survivor.name}" in ended["logs"]
    assert video_keys(s3, victim_job["id"]) == [ended["farm"]["object_key"]]  # one object, not two


def test_sigterm_mid_render_the_job_finishes_and_the_worker_exits_taking_no_new_one(workers, client, s3):
    (last,) = [w for w in workers if w.alive]
    rendering = client.submit(job(steps=40, seed=41))
    wait_until(lambda: step_of(client, rendering["id"]) >= 3, message="rendering")
    last.signal(signal.SIGTERM)
    queued_after = client.submit(job(seed=42))
    assert last.process.wait(timeout=90) == 0, last.logs()
    ended = client.get(rendering["id"])
    assert ended["status"] == "succeeded" and ended["farm"]["worker"] == last.name, ended
    assert video_keys(s3, rendering["id"]) == [ended["farm"]["object_key"]]
    untouched = client.get(queued_after["id"])
    assert untouched["status"] == "starting" and untouched["farm"]["queue_status"] == "todo"
    assert untouched["started_at"] is None
    client.cancel(queued_after["id"])
