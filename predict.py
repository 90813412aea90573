"""Cog adapter: typed inputs in, video out. The inputs and the work live in comfy_runtime."""

from collections.abc import Iterator

from cog import BasePredictor, Path

from comfy_runtime import VideoService
from comfy_runtime.cog_inputs import caller_inputs, served_inputs, with_cog_inputs
from comfy_runtime.cog_stream import stream_predict
from comfy_runtime.job.request import parse_request
from comfy_runtime.settings import Settings

# The configured model's inputs, once: the schema shows their defaults, and coglet fills those in for inputs not sent.
SERVED = served_inputs()
# HV_STREAM_PREVIEWS: the output's type is the schema's, so it is fixed when Cog imports this file.
STREAM = Settings().stream_previews


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.service = VideoService.from_settings(previews_taken=STREAM)  # one file out: no one would see them
        self.service.start()

    if STREAM:
        @with_cog_inputs(SERVED)
        def predict(self, **inputs) -> Iterator[Path]:  # each preview as it is made, then the video (file or URL)
            request = parse_request(caller_inputs(inputs, SERVED.defaults))
            # The scope's own method: the render runs on a thread of its own, where coglet's current scope is not this one.
            yield from stream_predict(self.service, request, self.scope.record_metric)
    else:
        @with_cog_inputs(SERVED)
        def predict(self, **inputs) -> Path:  # a file, or its object-storage URL: both a URI to a video
            request = parse_request(caller_inputs(inputs, SERVED.defaults))
            delivered = self.service.predict(request, record_metric=self.record_metric)
            return delivered.url or Path(delivered.file)
