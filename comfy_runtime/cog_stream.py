"""HV_STREAM_PREVIEWS=1: predict() as Cog's streamed output (Iterator[Path]): each preview a file, the video last.

The render runs on a thread of its own (the service's predict, unchanged); its PreviewReady events reach this
generator through a queue, and each is written to a spool file that stays until the next prediction (coglet
reads a yielded file after the yield, when the render may have moved on and cleaned its own folder). A cancel
lands in the generator (coglet raises it into predict's thread): the render is interrupted and waited for,
then the cancel goes on, as in single-file mode.
"""

from __future__ import annotations

import contextvars
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from comfy_runtime.backends.contract import PreviewReady, RunEvent
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.service import VideoService

WAKE_SECONDS = 0.05  # the generator wakes this often, so a cancel raised into its thread lands at once
SPOOL = ".stream"  # under the output folder: the yielded previews of the latest prediction

_END = object()


def stream_predict(service: VideoService, request: VideoRequest, record_metric: Callable[[str, Any], None],
                   log_line: Callable[[str], None] = print) -> Iterator[Path | str]:
    """record_metric: bound to this prediction (predict.py passes its scope's), as the render thread calls it."""
    spool = service.model.output_root / SPOOL
    shutil.rmtree(spool, ignore_errors=True)  # the previous prediction's previews: coglet has long sent them
    spool.mkdir(parents=True, exist_ok=True)
    events: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def on_event(event: RunEvent) -> None:
        if isinstance(event, PreviewReady):
            target = spool / event.path.name
            target.write_bytes(event.data)
            events.put(target)

    def render() -> None:
        try:
            outcome["delivered"] = service.predict(request, log_line=log_line, record_metric=record_metric,
                                                   subscribers=(on_event,))
        except BaseException as error:  # handed to the generator, which raises it in predict's own thread
            outcome["error"] = error
        finally:
            events.put(_END)

    # In this prediction's context: coglet finds the prediction (its log capture) through it, from any thread.
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(render,), name="render", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = events.get(timeout=WAKE_SECONDS)
            except queue.Empty:
                continue
            if item is _END:
                break
            yield item
    except BaseException:  # Cog's cancel (or the client going away): stop the render before giving up the GPU
        service.cancel()
        thread.join()
        raise
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    delivered = outcome["delivered"]
    yield delivered.url or Path(delivered.file)
