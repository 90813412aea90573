"""VideoService: the one facade predict.py (and the farm's worker) talks to.

start() checks the delivery destination, then boots the renderer; predict() renders a request and
delivers it; cancel() interrupts the render in flight. The renderer owns what stays on disk: a video
whose delivery failed is kept where the error says.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from comfy_runtime.delivery.deliverer import Delivered, Delivery, DeliveryFailed, LogSink, delivery_from_settings
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.render.renderer import VideoRenderer
from comfy_runtime.render.warm_start import warm_up
from comfy_runtime.settings import Settings

MetricSink = Callable[[str, Any], None]


def _no_metrics(name: str, value: Any) -> None:
    pass


class VideoService:
    def __init__(self, renderer: VideoRenderer, delivery: Delivery, warm_start: bool = False):
        self.renderer = renderer
        self.delivery = delivery
        self.warm_start = warm_start

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> VideoService:
        settings = settings or Settings()
        return cls(VideoRenderer.from_settings(settings), delivery_from_settings(settings), settings.warm_start)

    def start(self) -> None:
        # Cog leaves the root logger at WARNING: our own boot lines (the host memory decision, what did not load)
        # are INFO and must reach the setup logs; ComfyUI's INFO chatter (root logger) stays below the line.
        ours = logging.getLogger("comfy_runtime")
        if ours.level == logging.NOTSET:
            ours.setLevel(logging.INFO)
        # Storage first: a wrong bucket or key fails the boot in a second, not after ComfyUI has loaded.
        self.delivery.check()
        self.renderer.start()
        if self.warm_start:
            warm_up(self.renderer)

    def predict(self, request: VideoRequest, log_line: LogSink = print,
                record_metric: MetricSink = _no_metrics) -> Delivered:
        """Render and deliver; each metric (seed, steps, cache skips, LoRA fit, stage timings) also goes to
        record_metric (Cog's, in predict.py), so a caller sees them in the response without reading logs."""
        rendered = self.renderer.render(request, log_line=log_line)
        delivery_started = time.perf_counter()
        try:
            delivered = self.delivery.deliver(rendered, log_line)
        except DeliveryFailed:
            self.renderer.keep(rendered)  # the message points at the file: it must outlive the next prediction
            raise
        self.renderer.settle(rendered, delivered_elsewhere=delivered.elsewhere)
        upload = round(time.perf_counter() - delivery_started, 4)
        delivered = dataclasses.replace(delivered, metrics={**rendered.metrics, "timings.upload": upload})
        for name, value in delivered.metrics.items():
            record_metric(name, value)
        return delivered

    def cancel(self) -> None:
        self.renderer.cancel()

    def close(self) -> None:
        self.renderer.close()
