"""VideoService: one served model and one delivery, and the pipeline every front door runs a request through.

predict.py (Cog), the farm's worker (farm/worker.py) and the CLI's render (cli/main.py) all call predict():
plan (render/plan.py; the LoRA fetched into the node it placed) -> runtime.run(graph, events) -> encode
(render/encode.py) -> deliver (delivery/), each once, in that order. Progress is typed events (backends/contract.py RunEvent) handed to the caller's subscribers: the
log line writer, the metrics recorder, the farm's row writer, the GPU kit's timer. start() checks the delivery
destination, starts the served model and, with HV_WARM_START, runs the warm-start job; cancel() interrupts the run
in flight. The service owns what stays on disk: a prediction's folder outlives predict() so Cog can take the file
and goes when the next one starts; a video whose delivery failed is kept where the error says.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from comfy_runtime.backends.contract import RunDone, RunEvents, RunEventSubscriber, StageTimings
from comfy_runtime.delivery.deliverer import Delivered, Delivery, DeliveryFailed, FileDelivery, delivery_from_settings
from comfy_runtime.errors import ComfyRuntimeError, NodeExecutionError, OutOfMemory
from comfy_runtime.job.limits import RenderOutOfMemory, out_of_memory_advice
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.lora.fit import fit_metrics
from comfy_runtime.lora.graph import name_lora_file
from comfy_runtime.render.encode import encode_run
from comfy_runtime.render.eta import AfterSampling, RunEta
from comfy_runtime.render.metrics import MetricsRecorder, StageClock, render_metrics
from comfy_runtime.render.plan import START_IMAGE_NAME, RunInputs, RunPlan, plan_run
from comfy_runtime.render.progress import ProgressLog
from comfy_runtime.render.rendered import Rendered
from comfy_runtime.render.served_model import ServedModel
from comfy_runtime.render.start_image import decode_image, image_bytes
from comfy_runtime.render.warm_start import WARM_START_REQUEST, log_warm_start
from comfy_runtime.settings import Settings

LogSink = Callable[[str], None]
MetricSink = Callable[[str, Any], None]


def _no_metrics(name: str, value: Any) -> None:
    pass


def _quiet(line: str) -> None:
    pass


class VideoService:
    def __init__(self, model: ServedModel, delivery: Delivery | None = None, warm_start: bool = False):
        self.model = model
        self.delivery = delivery or FileDelivery()
        self.warm_start = warm_start
        # Retention: at most one finished folder on disk (Cog runs one prediction at a time).
        self._previous_run: Path | None = None
        self.after_sampling = AfterSampling()  # the ETA's decode/encode/upload rates, from the last prediction

    @classmethod
    def from_settings(cls, settings: Settings | None = None, delivery: Delivery | None = None, *,
                      previews_taken: bool = True) -> VideoService:
        """previews_taken=False: this front door has no use for live previews (Cog's one-file output, the CLI), so
        the sampler makes none."""
        settings = settings or Settings()
        return cls(ServedModel.from_settings(settings, previews_taken), delivery or delivery_from_settings(settings),
                   settings.warm_start)

    def start(self) -> None:
        # Cog leaves the root logger at WARNING: our own boot lines (the host memory decision, what did not load)
        # are INFO and must reach the setup logs; ComfyUI's INFO chatter (root logger) stays below the line.
        ours = logging.getLogger("comfy_runtime")
        if ours.level == logging.NOTSET:
            ours.setLevel(logging.INFO)
        # Storage first: a wrong bucket or key fails the boot in a second, not after ComfyUI has loaded.
        self.delivery.check()
        self.model.start()
        if self.warm_start:
            started = time.perf_counter()
            self.discard(self.render(VideoRequest(**WARM_START_REQUEST)))
            log_warm_start(time.perf_counter() - started)

    def predict(self, request: VideoRequest, log_line: LogSink = print, record_metric: MetricSink = _no_metrics,
                *, subscribers: Iterable[RunEventSubscriber] = (), key: str | None = None) -> Delivered:
        """Render and deliver (to `key`, where the destination takes one). The run's events go to the log line
        writer (log_line), to each of `subscribers`, and, once delivered, every metric (seed, steps, cache skips,
        LoRA fit, stage timings) to record_metric (Cog's, in predict.py)."""
        events = RunEvents((ProgressLog(log_line), MetricsRecorder(record_metric), *subscribers))
        rendered = self._render(request, events)
        delivery_started = time.perf_counter()
        try:
            delivered = self.delivery.deliver(rendered, events.note, key=key)
        except DeliveryFailed:
            self.keep(rendered)  # the message points at the file: it must outlive the next prediction
            raise
        if delivered.elsewhere:  # now in a bucket: the disk copy goes at once; a file Cog sends stays till the next
            self.discard(rendered)
        metrics = {**rendered.metrics, "timings.upload": round(time.perf_counter() - delivery_started, 4)}
        request_done = rendered.request
        self.after_sampling.learn({"upload": metrics["timings.upload"]}, request_done.width, request_done.height,
                                  request_done.num_frames)
        events(StageTimings({name.removeprefix("timings."): value for name, value in metrics.items()
                             if name.startswith("timings.")}))
        events(RunDone(request_done.width, request_done.height, request_done.num_frames, rendered.seed,
                       rendered.video.name, rendered.timings, metrics))
        return dataclasses.replace(delivered, metrics=metrics)

    def render(self, request: VideoRequest, log_line: LogSink = _quiet,
               subscribers: Iterable[RunEventSubscriber] = ()) -> Rendered:
        """Plan, run and encode, without delivery (the warm start, benches): the first half of predict()."""
        return self._render(request, RunEvents((ProgressLog(log_line), *subscribers)))

    def _render(self, request: VideoRequest, events: RunEvents) -> Rendered:
        """Plan, run and encode one request into a folder of its own (the previous prediction's folder goes
        first). Failure, time limit or cancel: nothing of this run is kept."""
        started = time.perf_counter()
        self._discard_previous()
        run_id = uuid.uuid4().hex
        run_dir = self.model.output_root / run_id
        clock = StageClock()
        events = RunEvents((clock, *events.subscribers))
        plan: RunPlan | None = None
        lora = None
        try:
            plan = plan_run(self.model, request, self._gather(request, run_dir), run_id)
            concrete = plan.request
            events.note(f"seed: {concrete.seed}")
            if plan.start_image is not None:
                self._upload_start_image(plan, run_dir, events)
            graph, lora = plan.graph, self.model.loras.resolve(request, events)
            if lora is not None:
                graph = name_lora_file(graph, lora.name)
            eta = RunEta(self.after_sampling, concrete.width, concrete.height, concrete.num_frames)
            result = self.model.runtime.run(graph, run_dir, on_progress=eta.annotating(events),
                                            timeout=self.model.limits.timeout)
            encode_started = time.perf_counter()
            video = encode_run(plan, result, run_dir / plan.prefix)
            encode_seconds = time.perf_counter() - encode_started
        except OutOfMemory as error:
            shutil.rmtree(run_dir, ignore_errors=True)
            assert plan is not None  # memory runs out only while the graph runs
            raise RenderOutOfMemory(out_of_memory_advice(error, plan.request)) from error
        except NodeExecutionError as error:
            shutil.rmtree(run_dir, ignore_errors=True)
            refused = self.model.loras.unloadable(request, lora, error) if lora is not None else None
            if refused is not None:
                raise refused from None
            raise
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        _keep_only(run_dir, video)  # intermediates (the tap's frames or the workflow's own video, temp files) go now
        self._previous_run = run_dir
        total = time.perf_counter() - started
        timings = {"comfyui_seconds": result.execution_seconds, "encode_seconds": encode_seconds, "total_seconds": total}
        stages = {**clock.seconds(encode_started), "encode": encode_seconds, "total": total}
        self.after_sampling.learn(stages, concrete.width, concrete.height, concrete.num_frames)
        if lora is not None:
            stages["lora_fetch"] = lora.seconds
        lora_metrics = fit_metrics(concrete, lora, result.lora_fits, events)
        return Rendered(
            video=video, seed=int(concrete.seed), request=concrete, run_dir=run_dir, produced_files=result.files,
            timings=timings,
            metrics=render_metrics(int(concrete.seed), int(concrete.steps), concrete.cache, result.cache_steps_skipped,
                                   result.execution_seconds, stages, lora_metrics),
        )

    def _gather(self, request: VideoRequest, run_dir: Path) -> RunInputs:
        """What the plan needs from outside: the seed (drawn here when the caller gave none) and the start image,
        fetched and decoded."""
        image = None
        if request.image is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            image = decode_image(image_bytes(request.image, run_dir, self.model.image_policy))
        return RunInputs(seed=int(request.with_seed().seed), image=image)

    def _upload_start_image(self, plan: RunPlan, run_dir: Path, events: RunEvents) -> None:
        fitted = run_dir / "start_image.png"
        plan.start_image.save(fitted)
        bound = self.model.runtime.upload_input(fitted, START_IMAGE_NAME)
        if bound != START_IMAGE_NAME:  # the plan's graph names the image: a renamed upload would load another file
            raise ComfyRuntimeError(f"ComfyUI stored the start image as {bound!r}, not {START_IMAGE_NAME!r}: let the "
                                    "upload overwrite the file of that name in its input folder")
        width, height = plan.start_image_size
        events.note(f"start image: {width}x{height} fitted to {plan.request.width}x{plan.request.height}")

    def keep(self, rendered: Rendered) -> None:
        """Exempt this prediction's folder from retention (its delivery failed and the error names the file):
        it stays on disk until someone removes it."""
        if self._previous_run == rendered.run_dir:
            self._previous_run = None

    def cancel(self) -> None:
        self.model.cancel()

    def close(self) -> None:
        self.model.close()

    def discard(self, rendered: Rendered) -> None:
        """Remove a run's folder now (a warm-start or bench run nobody will take the file of)."""
        shutil.rmtree(rendered.run_dir, ignore_errors=True)
        self.keep(rendered)  # gone already: nothing for retention to remove

    def _discard_previous(self) -> None:
        if self._previous_run is not None:
            shutil.rmtree(self._previous_run, ignore_errors=True)
            self._previous_run = None


def _keep_only(run_dir: Path, keep: Path) -> None:
    for path in run_dir.iterdir():
        if path == keep or path in keep.parents:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
