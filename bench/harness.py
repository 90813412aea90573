"""What the bench scripts need around the product: servers on 127.0.0.1, derived graphs, an in-process setup.

The bench does not import tests/ (the suite's helpers move with the suite and assert as they go); these are
the bench's own, kept to what a measurement needs. Every server here is a child process the script starts
on 127.0.0.1 and ends by its process group.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.processes import free_port, stop_process_group  # noqa: E402
from bench.range_server import RangeServer  # noqa: E402
from comfy_runtime.graph.workflow import WORKFLOWS_DIR, Workflow, load_workflow  # noqa: E402

# The fixture node pack (a slow stepping node, a failing node, OOM faults): data the bench loads, not code it imports.
FIXTURE_CUSTOM_NODES = ROOT / "tests" / "fixture_custom_nodes"
FINAL_STATUSES = {"succeeded", "failed", "canceled"}


# -- the plumbing graph, in-process ---------------------------------------------------------------
def plumbing_env(root: Path) -> dict[str, str]:
    """HV_* variables for an in-process Predictor on the weight-free plumbing graph under root: placeholder
    weight files (validation only lists them), the fixture nodes, the CPU."""
    from comfy_runtime.supply.manifest import load_manifest

    models = root / "models"
    for entry in load_manifest():
        (models / entry.relative_path).parent.mkdir(parents=True, exist_ok=True)
        (models / entry.relative_path).write_bytes(b"")
    return {
        "HV_WORKFLOW": "plumbing_video", "HV_MODELS_DIR": str(models), "HV_OUTPUT_DIR": str(root / "outputs"),
        "HV_DEVICE": "cpu", "HV_EXTRA_CUSTOM_NODES": json.dumps([str(FIXTURE_CUSTOM_NODES)]),
    }


def plumbing_with(*nodes: tuple[str, dict[str, Any]]) -> Workflow:
    """The plumbing workflow with fixture nodes chained between its frames (node 2) and CreateVideo (node 3),
    as nodes 9, 10, ..."""
    base = load_workflow("plumbing_video")
    graph = copy.deepcopy(base.graph)
    upstream = ["2", 0]
    for index, (class_type, inputs) in enumerate(nodes):
        graph[str(9 + index)] = {"class_type": class_type, "inputs": {"image": upstream, **inputs}}
        upstream = [str(9 + index), 0]
    graph["3"]["inputs"]["images"] = upstream
    return Workflow(name="plumbing_bench", graph=graph, bindings=base.bindings)


def write_slow_workflow(folder: Path, seconds_per_step: float) -> Path:
    """A workflows folder (HV_WORKFLOWS_DIR) with plumbing_slow: `steps` drives HVTestSlowSteps (node 9)."""
    slow = plumbing_with(("HVTestSlowSteps", {"steps": 1, "seconds_per_step": seconds_per_step}))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plumbing_slow.json").write_text(json.dumps(slow.graph))
    bindings = (WORKFLOWS_DIR / "plumbing_video.bindings.toml").read_text()
    (folder / "plumbing_slow.bindings.toml").write_text(bindings + 'steps = [{ node = "9", input = "steps" }]\n')
    return folder


def call_predict(predictor: Any, **inputs: Any) -> Any:
    """predictor.predict(**inputs) with every input not given at its declared Input default, as Cog fills them."""
    for name, parameter in inspect.signature(predictor.predict).parameters.items():
        if name not in inputs and parameter.default is not inspect.Parameter.empty:
            inputs[name] = getattr(parameter.default, "default", parameter.default)
    return predictor.predict(**inputs)


def frame_count(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# -- servers ----------------------------------------------------------------------------------------
class CogServer:
    """The real Cog HTTP server (coglet) with this repo's predict.py, on 127.0.0.1:<free port>."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "PORT": str(self.port), "COG_PREDICT_TYPE_STUB": "predict.py:Predictor",
                    # coglet starts its worker as `python`: it must be this venv's.
                    "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
        self.log_path = log_path
        self.client = httpx.Client(base_url=self.url, timeout=60)
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> CogServer:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"], cwd=ROOT,
                                            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        stop_process_group(self.process)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout: float = 300) -> None:
        """Until /health-check says READY (coglet frees its slot a moment after answering a prediction)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise SystemExit(f"the Cog server exited:\n{self.logs()}")
            with contextlib.suppress(httpx.TransportError):
                status = self.client.get("/health-check").json()["status"]
                if status == "READY":
                    return
                if status == "SETUP_FAILED":
                    raise SystemExit(f"the Cog server's setup failed:\n{self.logs()}")
            time.sleep(0.05)
        raise SystemExit(f"the Cog server was not READY within {timeout:g} s:\n{self.logs()}")

    def predict(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return self.client.post("/predictions", json={"input": inputs}).json()


class WebhookReceiver:
    """Records every webhook Cog sends, with its arrival time, on 127.0.0.1."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        events = self.events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                events.append({"received_at": time.monotonic(), **json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_prediction(self, prediction_id: str) -> list[dict[str, Any]]:
        return [event for event in list(self.events) if event.get("id") == prediction_id]

    def wait_final(self, prediction_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.for_prediction(prediction_id):
                if event["status"] in FINAL_STATUSES:
                    return event
            time.sleep(0.01)
        raise SystemExit(f"no final webhook for {prediction_id} within {timeout:g} s")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ComfyUIServer:
    """ComfyUI's own main.py as a server, as cog-comfyui and worker-comfyui run it: `--listen --port`, then HTTP."""

    def __init__(self, comfyui_path: Path, models_dir: Path, work_dir: Path, stock_flags: bool = False):
        self.comfyui_path, self.models_dir, self.work_dir = Path(comfyui_path), Path(models_dir), Path(work_dir)
        self.stock_flags = stock_flags  # True: ComfyUI's defaults (API nodes, previews on), as the wrappers run it
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> ComfyUIServer:
        base = self.work_dir / "base"
        for name in ("custom_nodes", "user", "input", "output", "temp"):
            (base / name).mkdir(parents=True, exist_ok=True)
        if not (base / "models").exists():  # the same model folder the embedded side lists
            (base / "models").symlink_to(self.models_dir.resolve(), target_is_directory=True)
        (self.work_dir / "no-frontend").mkdir(exist_ok=True)
        command = [sys.executable, str(self.comfyui_path / "main.py"), "--cpu", "--listen", "127.0.0.1",
                   "--port", str(self.port), "--base-directory", str(base),
                   "--front-end-root", str(self.work_dir / "no-frontend")]
        if not self.stock_flags:
            command += ["--disable-api-nodes", "--preview-method", "none"]  # the embedded runtime's node set
        with (self.work_dir / "comfyui-server.log").open("wb") as log:
            self.process = subprocess.Popen(command, cwd=self.work_dir, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self

    def stop(self) -> None:
        stop_process_group(self.process)


@contextlib.contextmanager
def moto_s3_server(log_path: Path) -> Iterator[str]:
    """moto's S3 server in a process of its own (a Python server: it bounds the client side's cost); yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"moto did not start on {url}: {log_path.read_text(errors='replace')[-2000:]}") from None
                time.sleep(0.1)
        yield url
    finally:
        stop_process_group(process, grace=10)


@contextlib.contextmanager
def range_server_process(root: Path, delay_per_chunk: float) -> Iterator[str]:
    """serve_ranges in another process (so the client's and the server's Python do not share a GIL); yields its URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "serve-ranges", str(root), str(port), str(delay_per_chunk)],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()  # the server prints its URL once it listens
    finally:
        stop_process_group(process, grace=10)


def serve_ranges(root: Path, port: int, delay_per_chunk: float) -> None:
    with RangeServer(root, port=port, delay_per_chunk=delay_per_chunk) as server:
        print(server.url, flush=True)
        threading.Event().wait()  # until range_server_process stops this process


def machine_line(**extra: Any) -> str:
    """Where and when a figure was measured: it goes on the first line of every bench's output."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    details = "".join(f", {key}={value}" for key, value in extra.items())
    return (f"machine: {os.cpu_count()} cores, {sys.platform}, load average {load:.1f}; "
            f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC{details}")


if __name__ == "__main__" and sys.argv[1:2] == ["serve-ranges"]:
    serve_ranges(Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
