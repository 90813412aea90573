"""The farm's Prometheus metrics and the workers' signed webhooks (issue 24), with a real PostgreSQL, one real
worker process (ComfyUI on the CPU, the stepping plumbing graph), the real gateway with tokens, moto's S3 server.

Each scrape is parsed with prometheus_client's own text parser and checked against the jobs this module ran.
"""

from __future__ import annotations

import json
import math
import re

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from comfy_runtime.farm.client import FarmClient
from comfy_runtime.farm.config import FarmSettings
from comfy_runtime.farm.tokens import create as create_token
from local_servers.farm_processes import GatewayProcess, WorkerProcess
from local_servers.processes import free_port
from tests.support.farm import FAIL_SEED, SECONDS_PER_STEP, wait_until, write_farm_workflow

BUCKET = "farm-metrics"
PROMPT = "a fox in a secret place"


@pytest.fixture(scope="module")
def client(pg):
    with FarmClient(FarmSettings(database_url=pg.url, webhook_allowed_hosts=["127.0.0.1"])) as farm:
        farm.ensure_schema()
        yield farm


@pytest.fixture(scope="module")
def member(client) -> dict[str, str]:
    with client.store.connection() as conn:
        made = create_token(conn, "metrics-member")
    return {"token": made.token, "secret": made.webhook_secret}


@pytest.fixture(scope="module")
def farm_env(hv_env, pg, s3, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("farm-metrics")
    return {
        **hv_env, "HV_WORKFLOW": "plumbing_farm", "HV_WORKFLOWS_DIR": str(write_farm_workflow(root / "workflows")),
        "HV_OUTPUT_DIR": str(root / "outputs"), "HV_S3_BUCKET": BUCKET, "HV_S3_ENDPOINT_URL": s3.url,
        "AWS_ACCESS_KEY_ID": "farm-test", "AWS_SECRET_ACCESS_KEY": "farm-test", "HV_FARM_DATABASE_URL": pg.url,
        "HV_FARM_HEARTBEAT_SECONDS": "0.5", "HV_FARM_POLL_SECONDS": "1", "HV_FARM_SYNC_WAIT_SECONDS": "0",
        "HV_FARM_WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
    }


@pytest.fixture(scope="module")
def worker(farm_env, client, tmp_path_factory):
    port = free_port()
    process = WorkerProcess({**farm_env, "HV_FARM_WORKER_METRICS_PORT": str(port),
                             "HV_FARM_WORKER_METRICS_HOST": "127.0.0.1"},
                            tmp_path_factory.mktemp("worker") / "worker.log").start()
    process.metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def gateway(farm_env, client, member, tmp_path_factory):
    process = GatewayProcess(farm_env, tmp_path_factory.mktemp("gateway") / "gateway.log").start()
    process.headers = {"Authorization": f"Bearer {member['token']}", "Prefer": "respond-async"}
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def job(**overrides) -> dict:
    return {"prompt": PROMPT, "width": 64, "height": 64, "num_frames": 5, "steps": 3, "fps": 8, **overrides}


def scrape(url: str) -> dict[str, list]:
    """{sample name: [(labels, value), ...]} from one scrape, read by prometheus_client's parser."""
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain"), response.text
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict[str, list], name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels` (0 when there is none)."""
    found = [v for got, v in samples.get(name, []) if labels.items() <= got.items()]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


def steps_logged(logs: str) -> int:
    return len(re.findall(r"HVTestSlowSteps step \d+/\d+", logs))


def test_metrics_of_the_gateway_and_the_worker_match_the_jobs_run(worker, gateway, client, member, pg, webhooks):
    with httpx.Client(base_url=gateway.url, timeout=60, headers=gateway.headers) as http:
        assert http.get("/metrics", headers={"Authorization": ""}).status_code == 200  # open, like /health-check
        # one long job rendering and one queued behind it (one worker): the backlog, and the worker busy
        long = http.post("/predictions", json={"input": job(steps=60, seed=1)}).json()
        wait_until(lambda: (http.get(f"/predictions/{long['id']}").json()["farm"]["progress"] or {}).get("step"),
                   message="rendering")
        queued = http.post("/predictions", json={"input": job(seed=2)}).json()
        during = scrape(f"{gateway.url}/metrics")
        assert value(during, "hv_farm_backlog", status="processing") == 1
        assert value(during, "hv_farm_backlog", status="starting") == 1
        assert value(scrape(worker.metrics_url), "hv_farm_worker_busy") == 1
        assert http.post(f"/predictions/{long['id']}/cancel").status_code == 200

        signed = http.post("/predictions", json={"input": job(seed=3), "webhook": f"{webhooks.url}/hook"}).json()
        failing = http.post("/predictions", json={"input": job(seed=FAIL_SEED, steps=1)}).json()
        ids = [long["id"], queued["id"], signed["id"], failing["id"]]
        ended = {pid: wait_until(lambda pid=pid: (p := http.get(f"/predictions/{pid}").json())["status"] in
                                 {"succeeded", "failed", "canceled"} and p, timeout=120) for pid in ids}
        assert [ended[pid]["status"] for pid in ids] == ["canceled", "succeeded", "succeeded", "failed"], ended
        assert http.get("/predictions/nope").status_code == 404
        assert http.get("/predictions/nope", headers={"Authorization": "Bearer hvf_wrong"}).status_code == 401
        assert http.get("/no/such/route/a-secret-path").status_code in (401, 404)

    # -- the worker, against the jobs it ran
    w = scrape(worker.metrics_url)
    workflow = {"workflow": "plumbing_farm"}
    assert value(w, "hv_farm_worker_jobs_total", outcome="succeeded", **workflow) == 2
    assert value(w, "hv_farm_worker_jobs_total", outcome="failed", **workflow) == 1
    assert value(w, "hv_farm_worker_jobs_total", outcome="canceled", **workflow) == 1
    assert value(w, "hv_farm_worker_busy") == 0
    assert value(w, "hv_farm_worker_render_seconds_count", **workflow) == 2  # the delivered ones
    assert value(w, "hv_farm_worker_render_seconds_sum", **workflow) >= 2 * 3 * SECONDS_PER_STEP
    assert value(w, "hv_farm_worker_model_load_seconds_count", **workflow) == 2
    steps = sum(steps_logged(ended[pid]["logs"]) for pid in ids)
    assert steps >= 3 + 3 + 1 + 1, steps
    assert value(w, "hv_farm_worker_step_seconds_count", **workflow) == steps
    # each step sleeps SECONDS_PER_STEP: a floor on what was measured, not a speed check
    assert value(w, "hv_farm_worker_step_seconds_sum", **workflow) >= steps * SECONDS_PER_STEP * 0.9
    assert value(w, "hv_farm_worker_peak_gpu_memory_bytes") == 0  # CPU

    # -- the gateway: requests by route template, the backlog and the wait histogram, against the database
    g = scrape(f"{gateway.url}/metrics")
    route = "/predictions/{prediction_id}"
    assert value(g, "hv_farm_gateway_requests_total", route="/predictions", method="POST", status="202") == 4
    assert value(g, "hv_farm_gateway_requests_total", route=route + "/cancel", method="POST", status="200") == 1
    assert value(g, "hv_farm_gateway_requests_total", route=route, method="GET", status="404") == 1
    assert value(g, "hv_farm_gateway_requests_total", route=route, method="GET", status="401") == 1
    assert value(g, "hv_farm_gateway_requests_total", route="unmatched", method="GET") == 1
    assert value(g, "hv_farm_gateway_requests_total", route="/metrics", method="GET", status="200") >= 1
    assert value(g, "hv_farm_backlog", status="processing") == 0 and value(g, "hv_farm_backlog", status="starting") == 0
    with client.store.connection() as conn:
        started = conn.execute("SELECT count(*) AS n, sum(extract(epoch FROM started_at - created_at))::float8 AS s "
                               "FROM hv_farm_predictions WHERE started_at IS NOT NULL").fetchone()
    assert started["n"] == 4  # every job of this module reached a worker
    # a start is read once it is START_LAG_SECONDS old (farm/metrics.py): wait for the last one to be counted
    g = wait_until(lambda: (s := scrape(f"{gateway.url}/metrics")) and value(s, "hv_farm_queue_wait_seconds_count") == 4
                   and s, timeout=30, message="every start in the wait histogram")
    assert math.isclose(value(g, "hv_farm_queue_wait_seconds_sum"), started["s"], rel_tol=1e-6)
    buckets = sorted((float(labels["le"]), v) for labels, v in g["hv_farm_queue_wait_seconds_bucket"])
    assert buckets[-1] == (math.inf, 4) and all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:], strict=False))

    # housekeeping deletes old rows (docs/farm.md): the histogram, a counter, does not go down
    with client.store.connection() as conn:
        conn.execute("DELETE FROM hv_farm_predictions WHERE id = ANY(%s)", (ids,))
    after_delete = scrape(f"{gateway.url}/metrics")
    assert value(after_delete, "hv_farm_queue_wait_seconds_count") == 4
    assert value(after_delete, "hv_farm_queue_wait_seconds_sum") == value(g, "hv_farm_queue_wait_seconds_sum")

    # -- no prompt, token, id or URL in any label of either scrape
    secrets = [PROMPT, member["token"], "secret-path", "http", *ids]
    for samples in (w, g):
        for name, series in samples.items():
            for labels, _ in series:
                assert not any(s in text for s in secrets for text in labels.values()), (name, labels)

    # -- the worker's webhooks (start, any rate-limited logs, completed) are signed with the member's secret
    webhooks.wait_final(signed["id"])
    deliveries = [(h, b) for h, b in webhooks.deliveries if json.loads(b)["id"] == signed["id"]]
    statuses = [json.loads(b)["status"] for _, b in deliveries]
    assert statuses[-1] == "succeeded" and set(statuses[:-1]) == {"processing"}, statuses
    for headers, body in deliveries:
        assert Webhook(member["secret"]).verify(body, headers)["id"] == signed["id"]
        with pytest.raises(WebhookVerificationError):
            Webhook(member["secret"]).verify(body.replace(b"succeeded", b"failed").replace(b"processing", b"failed"),
                                             headers)
    assert len({h["webhook-id"] for h, _ in deliveries}) == len(deliveries)  # one id per message


def test_a_worker_metrics_port_already_taken_is_refused_in_one_line():
    import socket

    from comfy_runtime.farm.config import FarmNotConfigured
    from comfy_runtime.farm.metrics import WorkerMetrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(FarmNotConfigured) as refused:
            WorkerMetrics("any").serve("127.0.0.1", port)
    message = str(refused.value)
    assert f"HV_FARM_WORKER_METRICS_PORT={port}" in message and "free port, or 0" in message and "\n" not in message
