"""What the render farm's queue costs per job, against a direct POST to one Cog server, and how jobs per
minute go from 1 to 2 workers. Tiny renders (the plumbing graph, 64x64x9) so the queue's share shows.

Same machine, same run: a real PostgreSQL (initdb, 127.0.0.1), moto's S3 server, the real Cog server with
predict.py delivering to S3, and real worker processes delivering to the same bucket.
- per job: submit -> started (created_at -> started_at, both the database's clock), finished -> visible
  (completed_at -> the client's poll seeing it), and end to end (submit -> result seen by the client)
  against the Cog server's sync round trip, as a ratio;
- throughput: 2 x runs jobs queued at once, drained by 1 worker, then by 2.
    .venv/bin/python bench/farm_overhead.py [runs]
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import FIXTURE_CUSTOM_NODES  # noqa: E402
from comfy_runtime.cog_schema import write_schema  # noqa: E402
from comfy_runtime.farm.client import FarmClient  # noqa: E402
from comfy_runtime.farm.config import FarmSettings  # noqa: E402
from local_servers.cog_server import CogServer  # noqa: E402
from local_servers.farm_processes import WorkerProcess  # noqa: E402
from local_servers.postgres_server import PostgresServer  # noqa: E402
from local_servers.s3_server import MotoS3Server  # noqa: E402

INPUTS = {"prompt": "bench", "width": 64, "height": 64, "num_frames": 9, "fps": 12, "seed": 1}
BUCKET = "bench"
POLL = 0.02  # the client's poll, seconds: what "visible" can resolve


def _wait_visible(client: FarmClient, prediction_id: str) -> tuple[dict, float]:
    while True:
        prediction = client.get(prediction_id)
        if prediction["status"] in ("succeeded", "failed", "canceled"):
            return prediction, time.time()
        time.sleep(POLL)


def _ts(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _drain(client: FarmClient, jobs: int) -> float:
    """Queue `jobs` at once; jobs per minute until the last one is visible."""
    started = time.perf_counter()
    ids = [client.submit({**INPUTS, "seed": i})["id"] for i in range(jobs)]
    for prediction_id in ids:
        prediction, _ = _wait_visible(client, prediction_id)
        assert prediction["status"] == "succeeded", prediction["error"]
    return jobs / ((time.perf_counter() - started) / 60)


def main(runs: int = 10) -> None:
    write_schema()
    with tempfile.TemporaryDirectory() as tmp, PostgresServer() as pg, \
            MotoS3Server(Path(tmp) / "moto.log") as s3:
        s3_url = s3.url
        boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1", aws_access_key_id="bench",
                     aws_secret_access_key="bench").create_bucket(Bucket=BUCKET)
        (Path(tmp) / "models").mkdir()
        env = {
            "HV_WORKFLOW": "plumbing_video", "HV_MODELS_DIR": str(Path(tmp) / "models"),
            "HV_OUTPUT_DIR": str(Path(tmp) / "outputs"), "HV_DEVICE": "cpu",
            "HV_EXTRA_CUSTOM_NODES": json.dumps([str(FIXTURE_CUSTOM_NODES)]),
            "HV_S3_BUCKET": BUCKET, "HV_S3_ENDPOINT_URL": s3_url,
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "HV_FARM_DATABASE_URL": pg.url,
        }

        # Baseline: the same render and upload through one Cog server, sync POSTs.
        with CogServer(env, Path(tmp) / "cog.log") as server:
            server.wait_for_status({"READY"})
            direct = []
            for _ in range(runs + 1):
                server.wait_for_status({"READY"})  # coglet frees its slot a moment after answering
                t0 = time.perf_counter()
                body = server.predict(INPUTS).json()
                direct.append(time.perf_counter() - t0)
                assert body["status"] == "succeeded", body.get("error")
            direct = direct[1:]  # the first warms caches

        client = FarmClient(FarmSettings(database_url=pg.url))
        client.ensure_schema()
        workers = [WorkerProcess(env, Path(tmp) / f"worker{i}.log") for i in range(2)]
        try:
            workers[0].start().wait_ready()
            to_start, to_visible, end_to_end, worker_side = [], [], [], []
            for i in range(runs + 1):
                t0 = time.time()
                submitted = client.submit({**INPUTS, "seed": i})
                prediction, seen = _wait_visible(client, submitted["id"])
                assert prediction["status"] == "succeeded", prediction["error"]
                to_start.append(_ts(prediction["started_at"]) - _ts(prediction["created_at"]))
                to_visible.append(seen - _ts(prediction["completed_at"]))
                end_to_end.append(seen - t0)
                worker_side.append(prediction["metrics"]["timings"]["total"] + prediction["metrics"]["timings"]["upload"])
            to_start, to_visible, end_to_end, worker_side = (x[1:] for x in (to_start, to_visible, end_to_end, worker_side))
            one_worker = _drain(client, 2 * runs)
            workers[1].start().wait_ready()
            two_workers = _drain(client, 2 * runs)
        finally:
            for worker in workers:
                worker.stop()
            client.close()

    med = statistics.median
    print(f"machine: {os.cpu_count()} cores, {sys.platform}, load {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d')}; runs={runs}; "
          f"client poll {POLL * 1000:.0f} ms")
    print(f"direct Cog server, sync POST (render + S3 upload)   {med(direct) * 1000:8.1f} ms")
    print(f"farm: submit -> started (queue pickup)               {med(to_start) * 1000:8.1f} ms")
    print(f"farm: finished -> result visible to the client       {med(to_visible) * 1000:8.1f} ms")
    print(f"farm: submit -> result seen, end to end              {med(end_to_end) * 1000:8.1f} ms")
    print(f"farm: render + upload inside the worker              {med(worker_side) * 1000:8.1f} ms")
    print(f"farm: end to end minus render + upload (the queue)   {(med(end_to_end) - med(worker_side)) * 1000:8.1f} ms")
    print(f"ratio farm end to end / direct Cog POST              {med(end_to_end) / med(direct):8.2f}")
    print(f"jobs per minute, 1 worker ({2 * runs} tiny jobs queued)      {one_worker:8.1f}")
    print(f"jobs per minute, 2 workers                           {two_workers:8.1f}")
    print(f"ratio 2 workers / 1 worker                           {two_workers / one_worker:8.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
