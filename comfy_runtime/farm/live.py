"""A running job as its client watches it: the latest preview in the bucket, the ETA, and rate-limited `logs` webhooks.

LiveJob is a subscriber of the job's run events (backends/contract.py), after the worker's row writer
(_JobProgress), whose progress dict it adds to:
- each PreviewReady is uploaded to <prefix>farm/<id>/preview.<mp4|webp>: one object per job, overwritten by the
  next; the upload runs on a thread of its own, newest wins (a slow bucket costs previews, never render time),
  and once it is in, progress["preview"] = {url, step, total};
- each step's ETA goes to progress["eta_seconds"];
- when the client's webhook_events_filter has `logs`, Cog's `logs` event is sent at most every
  HV_FARM_LOGS_WEBHOOK_SECONDS (from the end of the last send) while something changed, on a thread of its own.

When the job ends (finish()): succeeded, the preview object is deleted (the video is the result; a draft beside it
would only confuse); failed or canceled, it is kept, and the prediction still names it, so the client sees the
last state of what it stopped. prediction_json shows `farm.preview` unless the job succeeded and `farm.eta_seconds`
while it runs.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from comfy_runtime.backends.contract import PreviewReady, RunEvent, StepProgress
from comfy_runtime.delivery.storage import ObjectStore

log = logging.getLogger(__name__)

LIVE_KEYS = ("preview", "eta_seconds")  # what the progress dict carries for prediction_json to lift
CONTENT_TYPES = {"mp4": "video/mp4", "webp": "image/webp"}


def preview_key(video_key: str, prediction_id: str, format: str) -> str:
    """Beside the job's video: <prefix>farm/<id>/preview.<format>."""
    return f"{video_key.rsplit('/', 1)[0]}/preview.{format}" if "/" in video_key else f"{prediction_id}-preview.{format}"


def lifted(row: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None, float | None]:
    """(progress without the live keys, preview, eta_seconds) as a prediction shows them for the row's status."""
    progress = row.get("progress")
    if not progress:
        return progress, None, None
    status = row.get("status")
    rest = {name: value for name, value in progress.items() if name not in LIVE_KEYS}
    preview = progress.get("preview") if status != "succeeded" else None
    eta = progress.get("eta_seconds") if status in ("starting", "processing") else None
    return rest, preview, eta


def logs_sender(store: Any, prediction_id: str, send: Any) -> Any:
    """The `logs` webhook of one job: its row as it is now, with the live progress (newer than the row's)."""
    def send_logs(progress: dict[str, Any]) -> None:
        row = store.get(prediction_id)
        if row is not None and row["status"] not in ("succeeded", "failed", "canceled"):
            send({**row, "progress": progress})

    return send_logs


class LiveJob:
    def __init__(self, progress: Any, store: ObjectStore, video_key: str, prediction_id: str,
                 logs_webhook: Any = None, logs_every: float = 5.0):
        """progress: the worker's _JobProgress (its `progress` dict and `dirty` flag); logs_webhook: a callable
        (progress dict) -> None that sends the `logs` event, or None when the client did not ask for it."""
        self.progress = progress
        self.store = store
        self.video_key = video_key
        self.prediction_id = prediction_id
        self.logs_webhook = logs_webhook
        self.logs_every = logs_every
        self._uploads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preview-upload")
        self._webhooks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logs-webhook")
        self._lock = threading.Lock()
        self._waiting: PreviewReady | None = None  # newest preview not yet uploaded
        self._in_flight: Future | None = None
        self._uploaded: dict[str, Any] | None = None  # {url, step, total} of the newest preview in the bucket
        self._key: str | None = None
        self._sent_at = 0.0
        self._webhook: Future | None = None
        self._changed = False
        self.uploads = 0

    def __call__(self, event: RunEvent) -> None:
        progress = self.progress.progress
        if isinstance(event, PreviewReady):
            self._queue(event)
        elif isinstance(event, StepProgress) and event.eta_seconds is not None:
            progress["eta_seconds"] = event.eta_seconds
            self.progress.dirty = True
        with self._lock:
            uploaded = self._uploaded
        if uploaded is not None and progress.get("preview") != uploaded:  # a node start resets the dict: put it back
            progress["preview"] = uploaded
            self.progress.dirty = True
        self._changed = True
        self._maybe_send_logs()

    # -- the preview object ----------------------------------------------------------------------------
    def _queue(self, event: PreviewReady) -> None:
        with self._lock:
            self._waiting = event
            if self._in_flight is None or self._in_flight.done():
                self._in_flight = self._uploads.submit(self._upload_newest)

    def _upload_newest(self) -> None:
        while True:
            with self._lock:
                event, self._waiting = self._waiting, None
            if event is None:
                return
            key = preview_key(self.video_key, self.prediction_id, event.format)
            try:
                self.store.client.put_object(Bucket=self.store.config.bucket, Key=key, Body=event.data,
                                             ContentType=CONTENT_TYPES.get(event.format, "application/octet-stream"))
                url = self.store.url_for(key)
            except Exception as error:  # a preview is a courtesy: the render goes on
                log.warning("preview of %s at step %d not uploaded: %s", self.prediction_id, event.step, error)
                continue
            with self._lock:
                self._key = key
                self._uploaded = {"url": url, "step": event.step, "total": event.total}
                self.uploads += 1

    # -- the `logs` webhook ----------------------------------------------------------------------------
    def _maybe_send_logs(self) -> None:
        if self.logs_webhook is None or not self._changed or time.monotonic() - self._sent_at < self.logs_every:
            return
        if self._webhook is not None and not self._webhook.done():
            return  # the last one is still on its way: this change goes with the next
        self._changed = False
        self._webhook = self._webhooks.submit(self._send_logs, dict(self.progress.progress))

    def _send_logs(self, progress: dict[str, Any]) -> None:
        try:
            self.logs_webhook(progress)
        finally:  # the interval runs from the end of a send: the receiver never gets two closer than it
            self._sent_at = time.monotonic()

    # -- the end -----------------------------------------------------------------------------------------
    def finish(self, status: str) -> None:
        """The job ended: wait for the uploads in flight, then delete the preview on success, keep it otherwise."""
        with self._lock:
            in_flight = self._in_flight
        if in_flight is not None:
            in_flight.result()
        self._uploads.shutdown(wait=True)
        self._webhooks.shutdown(wait=True)
        with self._lock:
            uploaded, key = self._uploaded, self._key
        if uploaded is not None and self.progress.progress.get("preview") != uploaded:
            self.progress.progress["preview"] = uploaded
        if status == "succeeded" and key is not None:
            try:
                self.store.client.delete_object(Bucket=self.store.config.bucket, Key=key)
            except Exception as error:
                log.warning("preview %s of %s not deleted: %s", key, self.prediction_id, error)
