"""Hand a rendered video to the caller: the file itself, or its object-storage URL.

One output schema serves both: predict() is declared `-> cog.Path`, which Cog publishes as
`{"type": "string", "format": "uri"}`. A file is sent by Cog as a data: URI (or uploaded to
`--upload-url`, as on Replicate); with HV_S3_BUCKET set, predict returns the object's URL as a
plain string, which Cog passes through untouched (coglet 0.23.1; a cog.Path made from a URL would come
back null). Either way the caller gets one URI to a video; Replicate treats `format: uri` outputs as
files (previewed on its page, FileOutput objects in its clients), where a `str` schema stays text.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from comfy_runtime.errors import HunyuanVideoError
from comfy_runtime.render.rendered import Rendered
from comfy_runtime.settings import Settings

if TYPE_CHECKING:  # boto3 loads only where a bucket is configured: the GPU kit runs without it
    from comfy_runtime.delivery.storage import ObjectStore

log = logging.getLogger(__name__)
LogSink = Callable[[str], None]


class DeliveryFailed(HunyuanVideoError, RuntimeError):
    """The video was rendered but could not be delivered; the message names the cause and where it is kept.
    `cause` is the cause alone; `run_dir` the kept folder (None where nothing is kept)."""

    def __init__(self, message: str, cause: str = "", run_dir: Path | None = None):
        super().__init__(message)
        self.cause = cause or message
        self.run_dir = run_dir


@dataclass(frozen=True)
class Delivered:
    """Where the caller gets the video: `url` when it went to object storage, else the `file` Cog sends."""

    file: Path
    url: str = ""
    key: str = ""
    # The render's metrics (render/metrics.py) with the delivery's own time: what predict.py records for Cog.
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def elsewhere(self) -> bool:
        return bool(self.url)


class Delivery(Protocol):
    def check(self) -> None:
        """At setup: a destination that cannot take videos stops the boot."""

    def deliver(self, rendered: Rendered, log_line: LogSink = print, key: str | None = None) -> Delivered:
        """Raise DeliveryFailed naming the cause; the file stays where the message says."""


class FileDelivery:
    """No object storage: the file itself, which Cog sends (or uploads to --upload-url)."""

    def check(self) -> None:
        pass

    def deliver(self, rendered: Rendered, log_line: LogSink = print, key: str | None = None) -> Delivered:
        return Delivered(file=rendered.video)


class CopyDelivery:
    """The CLI's: the video copied to the path the operator named (default: its own name, in the current
    folder). Like an upload, the video then lives elsewhere, so the run folder under outputs/ goes."""

    def __init__(self, target: Path | str | None = None):
        self.target = target

    def check(self) -> None:
        pass

    def deliver(self, rendered: Rendered, log_line: LogSink = print, key: str | None = None) -> Delivered:
        target = Path(self.target or rendered.video.name).resolve()
        try:
            shutil.copyfile(rendered.video, target)
        except OSError as error:
            raise DeliveryFailed(f"could not copy the video to {target} ({error.strerror}); it is kept at "
                                 f"{rendered.video}: copy it from there, or give --out a writable path") from error
        return Delivered(file=target, url=target.as_uri())


class ObjectStoreDelivery:
    def __init__(self, store: ObjectStore):
        self.store = store

    def check(self) -> None:
        """A bucket that is missing, unreachable or refuses the credentials stops the boot."""
        self.store.check()

    def deliver(self, rendered: Rendered, log_line: LogSink = print, key: str | None = None) -> Delivered:
        metadata = {
            "inputs": rendered.shown_inputs,
            "seed": rendered.seed,
            "timings": rendered.timings,
            "metrics": rendered.metrics,
        }
        from comfy_runtime.delivery.storage import StorageError

        try:
            uploaded = self.store.upload(rendered.video, run_id=rendered.run_dir.name, metadata=metadata, key=key)
        except StorageError as error:
            raise DeliveryFailed(str(error), error.cause, rendered.run_dir) from None
        # The key, not the URL: a presigned URL is a bearer token for the object until it expires.
        log_line(f"uploaded s3://{self.store.config.bucket}/{uploaded.key} ({uploaded.size} bytes, {uploaded.content_type})")
        return Delivered(file=rendered.video, url=uploaded.url, key=uploaded.key)


def delivery_from_settings(settings: Settings | None = None) -> Delivery:
    settings = settings or Settings()
    if not settings.s3_bucket:  # no bucket: the file itself, and boto3 (~0.5-1 s to import) is never loaded
        return FileDelivery()
    from comfy_runtime.delivery.storage import ObjectStore, StorageConfig

    config = StorageConfig.from_settings(settings)
    return ObjectStoreDelivery(ObjectStore(config)) if config else FileDelivery()
