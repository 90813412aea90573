"""Cog adapter: typed inputs in, video out. The inputs and the work live in comfy_runtime."""

from cog import BasePredictor, Path

from comfy_runtime import VideoRequest, VideoService
from comfy_runtime.cog_inputs import caller_inputs, configured_defaults, with_cog_inputs


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.schema_defaults = configured_defaults()  # what coglet fills in for an input the caller did not send
        self.service = VideoService.from_settings()
        self.service.start()

    @with_cog_inputs(configured_defaults())
    def predict(self, **inputs) -> Path:  # a file, or its object-storage URL: both a URI to a video
        request = VideoRequest(**caller_inputs(inputs, self.schema_defaults))
        delivered = self.service.predict(request, record_metric=self.record_metric)
        return delivered.url or Path(delivered.file)
