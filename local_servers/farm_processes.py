"""The render farm's commands as real processes, for the farm tests and bench/farm_overhead.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from local_servers import PROJECT_ROOT
from local_servers.processes import free_port, stop_process_group


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
    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None):
        self.port = port or free_port()
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
