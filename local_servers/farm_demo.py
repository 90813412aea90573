"""`make farm-demo`: the whole render farm on this machine, in one command, gone again at Ctrl-C.

It starts what the farm tests start: a throwaway PostgreSQL (local_servers/postgres_server.py), moto's S3 server,
one gateway and two workers rendering the weight-free plumbing workflow on the CPU (noise: no model, the prompt is
not used). Then it creates a member API token (`jobs token create`), prints the jobs page's URL and the token, submits three jobs, and reports each as it ends.

Ctrl-C (SIGINT) or SIGTERM stops everything it started, each by the PID it started (the workers and the gateway
finish the job in hand first), and removes its temporary folder. `--state FILE` writes those PIDs, the URL and the
job ids as JSON, so a test (tests/test_farm_demo.py) can check that none is left.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from comfy_runtime.errors import HunyuanVideoError
from comfy_runtime.farm.client import FarmClient
from comfy_runtime.farm.config import FarmSettings
from local_servers import PROJECT_ROOT
from local_servers.farm_processes import GatewayProcess, WorkerProcess
from local_servers.postgres_server import PostgresServer
from local_servers.s3_server import MotoS3Server

BUCKET = "farm-demo"
WORKFLOW = "plumbing_video"
JOBS = (
    {"prompt": "a red fox running through fresh snow", "seed": 1},
    {"prompt": "waves breaking on a rocky shore at dusk", "seed": 2},
    {"prompt": "a paper boat drifting down a rain gutter", "seed": 3},
)
JOB_SIZE = {"width": 256, "height": 256, "num_frames": 25, "fps": 12}
TERMINAL = ("succeeded", "failed", "canceled")


def say(text: str) -> None:
    print(f"farm-demo: {text}", flush=True)


class _Stop(Exception):
    """SIGINT or SIGTERM arrived: unwind, stopping everything started so far."""


def _on_signal(signum, frame) -> None:
    raise _Stop(signal.Signals(signum).name)


def _farm_env(root: Path, pg: PostgresServer, s3: MotoS3Server) -> dict[str, str]:
    env = {
        "HV_WORKFLOW": WORKFLOW, "HV_DEVICE": "cpu", "HV_OUTPUT_DIR": str(root / "outputs"),
        "HV_MODELS_DIR": str(root / "models"), "HV_S3_BUCKET": BUCKET, "HV_S3_ENDPOINT_URL": s3.url,
        "HV_S3_PREFIX": "demo/", "AWS_ACCESS_KEY_ID": "farm-demo", "AWS_SECRET_ACCESS_KEY": "farm-demo",
        "HV_FARM_DATABASE_URL": pg.url, "HV_FARM_POLL_SECONDS": "1",
    }
    (root / "models").mkdir()
    return env


class DemoFailed(HunyuanVideoError, RuntimeError):
    """A process of the demo died or a set-up step failed; the message names the log to read."""


def _create_token(env: dict[str, str], log_path: Path) -> str:
    """A member token from `jobs token create`, as an operator makes one (the CLI talks to PostgreSQL)."""
    with log_path.open("ab") as log:
        created = subprocess.run(
            [sys.executable, "-m", "comfy_runtime", "jobs", "token", "create", "--name", "farm-demo", "--json"],
            cwd=PROJECT_ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=log, timeout=60,
        )
    if created.returncode != 0:
        raise DemoFailed(f"`jobs token create` failed (exit {created.returncode}): read {log_path}")
    return json.loads(created.stdout)["token"]


def _postgres_pid(pg: PostgresServer) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((pg.data / "postmaster.pid").read_text().splitlines()[0])
    return None


def _submit(url: str, headers: dict[str, str]) -> list[str]:
    ids = []
    for inputs in JOBS:
        answer = httpx.post(f"{url}/predictions", json={"input": {**inputs, **JOB_SIZE}},
                            headers={**headers, "Prefer": "respond-async"}, timeout=30)
        answer.raise_for_status()
        ids.append(answer.json()["id"])
    return ids


def run(port: int | None, workers: int, state_path: Path | None) -> int:
    root = Path(tempfile.mkdtemp(prefix="hv-farm-demo-"))
    started: list[Any] = []
    state: dict[str, Any] = {"root": str(root), "pids": {}}

    def write_state() -> None:
        if state_path:
            state_path.write_text(json.dumps(state))

    kept = False
    with contextlib.ExitStack() as stack:
        try:
            say(f"starting PostgreSQL, an S3 server, a gateway and {workers} workers (logs in {root})")
            pg = stack.enter_context(PostgresServer())
            state["pids"]["postgres"] = _postgres_pid(pg)
            s3 = stack.enter_context(MotoS3Server(root / "s3.log"))
            state["pids"]["s3"] = s3.process.pid
            write_state()
            s3.client().create_bucket(Bucket=BUCKET)
            env = _farm_env(root, pg, s3)
            # The schema first (tokens live in it), then a token if this farm has them.
            with FarmClient(FarmSettings(database_url=pg.url)) as client:
                client.ensure_schema()
            token = _create_token(env, root / "token.log")
            gateway = GatewayProcess(env, root / "gateway.log", port=port).start()
            stack.callback(gateway.stop)
            started.append(gateway)
            state["pids"]["gateway"] = gateway.pid
            for index in range(workers):
                worker = WorkerProcess(env, root / f"worker{index}.log").start()
                stack.callback(worker.stop)
                started.append(worker)
                state["pids"].setdefault("workers", []).append(worker.pid)
            write_state()
            gateway.wait_ready()
            for worker in started[1:]:
                worker.wait_ready(timeout=300)
            url = gateway.url
            state.update(url=url, page=f"{url}/ui", token=token)
            say(f"the jobs page: {url}/ui")
            say(f"token (shown once; paste it into the page): {token}")
            say("PIDs: " + ", ".join(f"{name} {pid}" for name, pid in state["pids"].items()))
            headers = {"Authorization": f"Bearer {token}"}
            state["jobs"] = _submit(url, headers)
            write_state()
            say(f"submitted {len(state['jobs'])} jobs: {' '.join(state['jobs'])}")
            say("Ctrl-C stops everything it started")
            _follow(url, headers, state["jobs"], started)
        except _Stop as stop:
            say(f"{stop}: stopping the workers, the gateway, the S3 server and PostgreSQL")
        except (HunyuanVideoError, AssertionError, OSError, subprocess.SubprocessError, httpx.HTTPError) as error:
            # AssertionError: local_servers' start-up checks (a server that never came up), with its log's tail.
            kept = True
            say(f"failed: {' '.join(str(error).split())[:600]}")
        finally:
            # A second Ctrl-C while stopping must not cut the clean-up short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if kept:
        say(f"stopped everything it started; the logs are kept in {root}")
        return 1
    shutil.rmtree(root, ignore_errors=True)
    say("stopped; nothing it started is left")
    return 0


def _follow(url: str, headers: dict[str, str], ids: list[str], processes: list[Any]) -> None:
    """Report each job as it ends, then wait for Ctrl-C; stop at once if a process the demo started died."""
    ended: set[str] = set()
    while True:
        for process in processes:
            if not process.alive:
                raise DemoFailed(f"{process.args[0]} (PID {process.pid}) exited: read {process.log_path}")
        for prediction_id in ids:
            if prediction_id in ended:
                continue
            with contextlib.suppress(httpx.HTTPError):
                prediction = httpx.get(f"{url}/predictions/{prediction_id}", headers=headers, timeout=10).json()
                if prediction.get("status") in TERMINAL:
                    ended.add(prediction_id)
                    # The URL without its presigned query (a screenful); the page plays the video.
                    shown = (prediction.get("output") or "").split("?")[0] or prediction.get("error")
                    say(f"job {prediction_id} {prediction['status']}: {shown}")
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make farm-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=None, help="the gateway's port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--state", type=Path, default=None, help="write the PIDs, URL and job ids here as JSON")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    return run(args.port, args.workers, args.state)


if __name__ == "__main__":
    sys.exit(main())
