"""A webhook receiver for Cog's async predictions, on 127.0.0.1; stopped by the test."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FINAL_STATUSES = {"succeeded", "failed", "canceled"}


class WebhookReceiver:
    """Records every webhook Cog sends, with the time it arrived."""

    def __init__(self):
        self.events: list[dict] = []
        # Each delivery as sent (headers, body bytes), for checking signatures over the exact bytes.
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
                receiver.events.append({"path": self.path, "received_at": time.monotonic(), **json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def for_prediction(self, prediction_id: str) -> list[dict]:
        return [event for event in list(self.events) if event.get("id") == prediction_id]

    def wait_for(self, prediction_id: str, condition, what: str, timeout: float = 60) -> list[dict]:
        """Wait until condition(events of this prediction) holds; fail naming `what` and the events seen."""
        deadline = time.monotonic() + timeout
        while not condition(events := self.for_prediction(prediction_id)):
            assert time.monotonic() < deadline, f"no {what} for {prediction_id} within {timeout:g} s: {events}"
            time.sleep(0.05)
        return events

    def wait_final(self, prediction_id: str, timeout: float = 60) -> dict:
        events = self.wait_for(prediction_id, lambda evs: any(e["status"] in FINAL_STATUSES for e in evs),
                               "final webhook", timeout)
        return next(e for e in events if e["status"] in FINAL_STATUSES)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
