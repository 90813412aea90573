"""Helpers for the Cog contract tests and benches: a slow stepping workflow and a webhook receiver."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from comfy_runtime.graph.workflow import WORKFLOWS_DIR

SECONDS_PER_STEP = 0.1


def write_slow_workflow(folder: Path, seconds_per_step: float = SECONDS_PER_STEP) -> Path:
    """plumbing_video with `steps` driving HVTestSlowSteps (a stepping, interruptible fixture node)."""
    graph = json.loads((WORKFLOWS_DIR / "plumbing_video.json").read_text())
    graph["9"] = {"class_type": "HVTestSlowSteps",
                  "inputs": {"image": ["2", 0], "steps": 1, "seconds_per_step": seconds_per_step}}
    graph["3"]["inputs"]["images"] = ["9", 0]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plumbing_slow.json").write_text(json.dumps(graph))
    bindings = (WORKFLOWS_DIR / "plumbing_video.bindings.toml").read_text()
    (folder / "plumbing_slow.bindings.toml").write_text(bindings + 'steps = [{ node = "9", input = "steps" }]\n')
    return folder


class WebhookReceiver:
    """Records every webhook Cog sends, on 127.0.0.1; stopped by the test."""

    def __init__(self):
        self.events: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.events.append({"path": self.path, "received_at": time.monotonic(), **json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def for_prediction(self, prediction_id: str) -> list[dict]:
        return [event for event in list(self.events) if event.get("id") == prediction_id]

    def wait_final(self, prediction_id: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.for_prediction(prediction_id):
                if event["status"] in {"succeeded", "failed", "canceled"}:
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no final webhook for {prediction_id}: {self.for_prediction(prediction_id)}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
