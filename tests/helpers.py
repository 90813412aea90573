"""Shared test helpers: video probing, free ports, the real Cog server as a context manager."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import av
import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FIXTURE_CUSTOM_NODES = Path(__file__).resolve().parent / "fixture_custom_nodes"


@dataclass(frozen=True)
class VideoProbe:
    frames: int
    width: int
    height: int
    fps: float
    codec: str


def probe_video(path: Path) -> VideoProbe:
    """Decode every frame (not just the header) and report what is really there."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        rate = stream.average_rate or stream.guessed_rate
        return VideoProbe(
            frames=frames,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(rate) if rate else 0.0,
            codec=stream.codec_context.name,
        )


def decode_frames(path: Path) -> list:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def stop_process_group(process: subprocess.Popen | None, grace: float = 20) -> None:
    """End a server a test started with start_new_session=True: SIGTERM to its group only (the server and the
    workers it spawned), SIGKILL after `grace` seconds."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_data_uri(uri: str, target: Path) -> Path:
    header, payload = uri.split(",", 1)
    assert header.startswith("data:") and header.endswith(";base64"), header
    target.write_bytes(base64.b64decode(payload))
    return target


class CogServer:
    """The real Cog HTTP server (coglet) with this repo's predict.py, on 127.0.0.1:<free port>."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        venv_bin = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            **env,
            "PORT": str(self.port),
            "COG_PREDICT_TYPE_STUB": "predict.py:Predictor",
            # coglet starts its worker as `python`: it must be this venv's.
            "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        }
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def __enter__(self) -> CogServer:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"],
            cwd=PROJECT_ROOT,
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
        """Poll /health-check until its status is one of `wanted`; return the body and every status seen."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.logs()
            try:
                body = self.health()
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            if not seen or seen[-1] != body["status"]:
                seen.append(body["status"])
            if body["status"] in wanted:
                return body, seen
            time.sleep(0.1)
        raise AssertionError(f"server never reached {wanted}; saw {seen}\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:]

    def predict(self, inputs: dict, **kwargs) -> httpx.Response:
        return self.client.post("/predictions", json={"input": inputs}, **kwargs)


def dumps(value) -> str:
    return json.dumps(value, indent=2)[:4000]
