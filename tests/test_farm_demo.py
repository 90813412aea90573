"""`make farm-demo` as a user runs it: the module in a process of its own, its three jobs succeed, and Ctrl-C
(SIGINT to its process group, as a terminal sends it) stops everything it started, each PID it reported gone."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import httpx
import pytest

from tests.support.farm import wait_until
from tests.support.paths import PROJECT_ROOT

pytestmark = pytest.mark.timeout(600)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent (gone or reaping) still holds its entry.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_farm_demo_comes_up_runs_three_jobs_and_ctrl_c_leaves_nothing(tmp_path):
    state_path, log_path = tmp_path / "state.json", tmp_path / "demo.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HV_", "AWS_"))}
    with log_path.open("wb") as log:
        demo = subprocess.Popen([sys.executable, "-m", "local_servers.farm_demo", "--state", str(state_path)],
                                cwd=PROJECT_ROOT, env={**env, "OMP_NUM_THREADS": "1"}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def submitted():
            assert demo.poll() is None, log_path.read_text()
            return "submitted 3 jobs" in log_path.read_text() and json.loads(state_path.read_text())

        state = wait_until(submitted, timeout=300, interval=0.5, message="the demo's three jobs submitted")
        pids = [state["pids"]["postgres"], state["pids"]["s3"], state["pids"]["gateway"], *state["pids"]["workers"]]
        assert len(pids) == 5 and all(pids) and all(_alive(pid) for pid in pids), state
        printed = log_path.read_text()
        assert f"the jobs page: {state['page']}" in printed and "Ctrl-C stops everything" in printed
        assert httpx.get(state["page"], timeout=10).status_code == 200
        # A real token, printed once; the gateway refuses a request without it.
        assert state["token"].startswith("hvf_") and f"token (shown once; paste it into the page): {state['token']}" in printed
        assert httpx.get(f"{state['url']}/predictions", timeout=10).status_code == 401
        headers = {"Authorization": f"Bearer {state['token']}"}

        def statuses():
            return [httpx.get(f"{state['url']}/predictions/{i}", headers=headers, timeout=10).json()["status"]
                    for i in state["jobs"]]

        wait_until(lambda: all(s in ("succeeded", "failed", "canceled") for s in statuses()), timeout=180,
                   interval=0.5, message="the three jobs ended")
        assert statuses() == ["succeeded"] * 3, log_path.read_text()
        listed = httpx.get(f"{state['url']}/predictions", headers=headers, timeout=10).json()["results"]
        assert {p["id"] for p in listed} == set(state["jobs"])
        wait_until(lambda: log_path.read_text().count(" succeeded: ") == 3, message="the demo reporting each job")
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the foreground process group
        try:
            code = demo.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            raise
    printed = log_path.read_text()
    assert code == 0 and "SIGINT: stopping" in printed and "stopped; nothing it started is left" in printed, printed
    wait_until(lambda: not [pid for pid in pids if _alive(pid)], timeout=30, interval=0.2,
               message="every process the demo started gone")
    assert not os.path.exists(state["root"]), state  # its logs and outputs folder too



def test_farm_demo_stops_everything_and_keeps_its_logs_when_a_worker_dies(tmp_path):
    """A process the demo started dies (SIGKILL, as the OOM killer would): the demo stops the rest, says which one
    died and where its log is, keeps its logs, and exits 1."""
    state_path, log_path = tmp_path / "state.json", tmp_path / "demo.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HV_", "AWS_"))}
    with log_path.open("wb") as log:
        demo = subprocess.Popen([sys.executable, "-m", "local_servers.farm_demo", "--state", str(state_path),
                                 "--workers", "1"], cwd=PROJECT_ROOT, env={**env, "OMP_NUM_THREADS": "1"},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        state = wait_until(lambda: demo.poll() is None and "submitted 3 jobs" in log_path.read_text()
                           and json.loads(state_path.read_text()), timeout=300, interval=0.5, message="the demo up")
        (worker,) = state["pids"]["workers"]
        os.kill(worker, signal.SIGKILL)
        code = demo.wait(timeout=120)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    printed = log_path.read_text()
    assert code == 1 and f"worker (PID {worker}) exited: read {state['root']}/worker0.log" in printed, printed
    assert f"the logs are kept in {state['root']}" in printed
    pids = [state["pids"]["postgres"], state["pids"]["s3"], state["pids"]["gateway"]]
    wait_until(lambda: not [pid for pid in pids if _alive(pid)], timeout=30, interval=0.2,
               message="every other process the demo started gone")
    assert os.path.exists(f"{state['root']}/gateway.log")
    shutil.rmtree(state["root"])
