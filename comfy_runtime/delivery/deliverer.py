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
from pathlib import Path

from comfy_runtime.delivery.storage import ObjectStore, StorageConfig, StorageError
from comfy_runtime.errors import HunyuanVideoError
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.render.renderer import Rendered, VideoRenderer
from comfy_runtime.settings import Settings

log = logging.getLogger(__name__)


class DeliveryFailed(HunyuanVideoError, RuntimeError):
    """The video was rendered but could not be delivered; the message names the cause and where it is kept."""


class Delivery:
    def __init__(self, store: ObjectStore | None):
        self.store = store

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Delivery:
        config = StorageConfig.from_settings(settings or Settings())
        return cls(ObjectStore(config) if config else None)

    def check(self) -> None:
        """At setup: a bucket that is missing, unreachable or refuses the credentials stops the boot."""
        if self.store is not None:
            self.store.check()

    def deliver(self, renderer: VideoRenderer, rendered: Rendered, request: VideoRequest, log_line=print,
                key: str | None = None) -> Path | str:
        if self.store is None:
            return rendered.video
        metadata = {
            "inputs": request.model_dump(mode="json"),
            "seed": rendered.seed,
            "timings": rendered.timings,
        }
        try:
            uploaded = self.store.upload(rendered.video, run_id=rendered.run_dir.name, metadata=metadata, key=key)
        except StorageError as error:
            renderer.keep(rendered)  # the message points at the file: it must outlive the next prediction
            raise DeliveryFailed(str(error)) from None
        # The key, not the URL: a presigned URL is a bearer token for the object until it expires.
        log_line(f"uploaded s3://{self.store.config.bucket}/{uploaded.key} ({uploaded.size} bytes, {uploaded.content_type})")
        renderer.discard(rendered)  # the bucket has it now; nothing of this prediction stays on the disk
        return uploaded.url
