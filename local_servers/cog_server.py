"""The real Cog HTTP server (coglet) with this repo's predict.py, on 127.0.0.1:<free port>."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from local_servers import PROJECT_ROOT
from local_servers.processes import free_port, stop_process_group


class CogServer:
    """Started on __enter__, stopped (its whole process group) on __exit__ or stop(). It serves this repo's
    predict.py unless `project_dir` names another folder with a predict.py of its own."""

    def __init__(self, env: dict[str, str], log_path: Path, project_dir: Path = PROJECT_ROOT):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.project_dir = project_dir
        venv_bin = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            **env,
            "PORT": str(self.port),
            "COG_PREDICT_TYPE_STUB": "predict.py:Predictor",
            # coglet starts its worker as `python`: it must be this venv's.
            "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        }
        self.env.pop("KUBERNETES_SERVICE_HOST", None)  # else coglet writes /var/run/cog/ready on this machine
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def __enter__(self) -> CogServer:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"],
            cwd=self.project_dir,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.client.close()
        stop_process_group(self.process)
        self._log.close()

    def health(self) -> dict:
        return self.client.get("/health-check").json()

    def wait_for_status(self, wanted: set[str], timeout: float = 180) -> tuple[dict, list[str]]:
        """Poll /health-check until its status is one of `wanted`; return the body and every status seen,
        in order ("unreachable" while nothing answers yet)."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.logs()
            try:
                status = (body := self.health())["status"]
            except httpx.TransportError:
                status, body = "unreachable", {}
            if not seen or seen[-1] != status:
                seen.append(status)
            if status in wanted:
                return body, seen
            time.sleep(0.1)
        raise AssertionError(f"server never reached {wanted}; saw {seen}\n{self.logs()}")

    def wait_until_ready(self, timeout: float = 180) -> dict:
        """Wait for setup to end and fail the test, with the server's log, unless it ended READY."""
        body, _ = self.wait_for_status({"READY", "SETUP_FAILED"}, timeout)
        assert body["status"] == "READY", self.logs()
        return body

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:]

    def predict(self, inputs: dict, **kwargs) -> httpx.Response:
        return self.client.post("/predictions", json={"input": inputs}, **kwargs)

    def predict_when_ready(self, inputs: dict, **kwargs) -> httpx.Response:
        """A sync prediction once the server is READY: coglet answers one a moment before it frees its slot,
        and a POST sent in that moment gets 409 "at capacity"."""
        self.wait_for_status({"READY"}, timeout=60)
        return self.predict(inputs, **kwargs)
