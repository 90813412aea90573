"""The render farm's parts as real processes for tests: worker processes, the gateway, the derived workflow.

Workers render `plumbing_farm`: the plumbing graph with `steps` driving the stepping fixture node
HVTestSlowSteps (a render lasts as long as a test needs, and reports progress per step) and the seed
driving HVTestFailOnValue (seed 666 fails in a node; every other seed renders).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from comfy_runtime.graph.workflow import WORKFLOWS_DIR
from tests.helpers import PROJECT_ROOT, free_port, stop_process_group

FAIL_SEED = 666
SECONDS_PER_STEP = 0.1


def write_farm_workflow(folder: Path, seconds_per_step: float = SECONDS_PER_STEP) -> Path:
    graph = json.loads((WORKFLOWS_DIR / "plumbing_video.json").read_text())
    graph["9"] = {"class_type": "HVTestSlowSteps",
                  "inputs": {"image": ["2", 0], "steps": 1, "seconds_per_step": seconds_per_step}}
    graph["10"] = {"class_type": "HVTestFailOnValue", "inputs": {"image": ["9", 0], "value": 0, "fail_value": FAIL_SEED}}
    graph["3"]["inputs"]["images"] = ["10", 0]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plumbing_farm.json").write_text(json.dumps(graph))
    bindings = (WORKFLOWS_DIR / "plumbing_video.bindings.toml").read_text()
    bindings = bindings.replace('seed = [{ node = "2", input = "seed" }]',
                                'seed = [{ node = "2", input = "seed" }, { node = "10", input = "value" }]')
    (folder / "plumbing_farm.bindings.toml").write_text(bindings + 'steps = [{ node = "9", input = "steps" }]\n')
    return folder


class _Process:
    """A farm command (`python -m comfy_runtime ...`) in its own session, logging to a file, stopped by the test."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.args = args
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self):
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "comfy_runtime", *self.args], cwd=PROJECT_ROOT, env=self.env,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def logs(self, tail: int | None = 6000) -> str:
        text = self.log_path.read_text(errors="replace")
        return text[-tail:] if tail else text

    def wait_for_log(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace"):
                return
            assert self.alive, f"{self.args[0]} exited with {self.process.returncode}:\n{self.logs()}"
            time.sleep(0.1)
        raise AssertionError(f"{self.args[0]} never logged {text!r}:\n{self.logs()}")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signum)

    def stop(self, grace: float = 30) -> None:
        stop_process_group(self.process, grace=grace)
        if hasattr(self, "_log"):
            self._log.close()


class WorkerProcess(_Process):
    def __init__(self, env: dict[str, str], log_path: Path):
        super().__init__(["worker"], env, log_path)

    @property
    def name(self) -> str:
        import socket

        return f"{socket.gethostname()}:{self.pid}"

    def wait_ready(self, timeout: float = 180) -> WorkerProcess:
        self.wait_for_log("ready: taking jobs", timeout)
        return self

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(timeout=30)


class GatewayProcess(_Process):
    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(["gateway", "--host", "127.0.0.1", "--port", str(self.port)], env, log_path)

    def wait_ready(self, timeout: float = 60) -> GatewayProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.alive, self.logs()
            try:
                if httpx.get(f"{self.url}/health-check", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gateway never became healthy:\n{self.logs()}")


def wait_until(predicate, timeout: float = 60, interval: float = 0.1, message: str = "condition"):
    """Poll `predicate` until it returns something truthy; return it. A deadline, not a timed assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{message} not reached within {timeout:g} s")
