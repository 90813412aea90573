"""VideoRenderer: the one facade predict.py talks to.

start() boots the runtime and proves the workflow's bindings fit ComfyUI; render() turns a
VideoRequest into a video file in a folder of its own; cancel() interrupts the render in flight.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfy_runtime.backends.contract import ComfyRuntime, RunResult
from comfy_runtime.backends.factory import backend_from_settings
from comfy_runtime.errors import HunyuanVideoError, OutOfMemory
from comfy_runtime.graph.frame_tap import FrameTap, add_frame_tap, tapped_file
from comfy_runtime.graph.model_chain import add_cache, add_lora, apply_dit_settings
from comfy_runtime.graph.types import Graph
from comfy_runtime.graph.workflow import Workflow, check_bindings, load_workflow
from comfy_runtime.job.budget import gpu_total_bytes
from comfy_runtime.job.limits import JobLimits, RenderOutOfMemory, out_of_memory_advice
from comfy_runtime.job.params import MAX_IMAGE_BYTES, graph_input_ranges, graph_input_types
from comfy_runtime.job.params import defaults as input_defaults
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.render.encode import encode_frames, transcode
from comfy_runtime.render.lora import LoraSource, ResolvedLora
from comfy_runtime.render.metrics import StageClock, render_metrics
from comfy_runtime.render.model_choice import (
    Stages,
    choose_workflow,
    refuse_over_limits,
    switched_off,
)
from comfy_runtime.render.progress import ProgressLog, summary_line
from comfy_runtime.render.start_image import decode_image, fit_image, image_bytes, size_for_aspect
from comfy_runtime.settings import Settings
from comfy_runtime.supply.boot_checks import NO_SUPPLY_CHECKS, SupplyChain, SupplyChecks
from comfy_runtime.supply.url_fetch import FetchPolicy

log = logging.getLogger(__name__)
LogSink = Callable[[str], None]
VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mov", ".mkv")
# The name the fitted start image goes to ComfyUI's input folder under (one prediction at a time: each
# overwrites the last). The bundled image-to-video graphs name it, so they validate at setup with a placeholder.
START_IMAGE_NAME = "hv_start_image.png"

@dataclass(frozen=True)
class _PreparedRun:
    request: VideoRequest  # concrete: the start image's size, the workflow's defaults and the seed filled in
    graph: Graph
    tap: FrameTap | None
    lora: ResolvedLora | None


@dataclass(frozen=True)
class Rendered:
    video: Path
    seed: int
    request: VideoRequest  # as rendered: the workflow's defaults filled in, the seed concrete
    run_dir: Path
    # Every file the run produced, as a record: all but `video` are deleted once it is written.
    produced_files: list[Path]
    timings: dict[str, float] = field(default_factory=dict)
    # seed, steps, cache skips, the LoRA's fit and the stage timings, named for Cog's record_metric (render/metrics.py)
    metrics: dict[str, Any] = field(default_factory=dict)


class RenderFailed(HunyuanVideoError, RuntimeError):
    pass


class SpeedSettingRefused(HunyuanVideoError, ValueError):
    pass


class WrongModelFile(HunyuanVideoError, RuntimeError):
    """A workflow's loader names a file of another model than the one the workflow is wired for."""


class VideoRenderer:
    def __init__(
        self,
        runtime: ComfyRuntime,
        workflow: Workflow,
        output_root: Path,
        limits: JobLimits | None = None,
        supply: SupplyChecks = NO_SUPPLY_CHECKS,
        tap_frames: bool = True,
        loras: LoraSource | None = None,
        dit_weight_dtype: str = "default",
        torch_compile: bool = False,
        image_policy: FetchPolicy | None = None,
        serve_image_to_video: bool = True,
        serve_upscale: bool = True,
    ):
        self.runtime = runtime
        self.workflow = workflow
        self.output_root = Path(output_root).resolve()
        self.limits = limits or JobLimits.default()
        self.supply = supply  # weights + locked nodes, checked in start()
        # The lossless frame tap (frame_tap.py) is ~90 MB at 848x480x73: cheap as a local file deleted at once,
        # but a remote server would keep every one (ComfyUI has no delete API) and send each over /view.
        # A remote run keeps its SaveVideo file instead, re-encoded for delivery.
        self.tap_frames = tap_frames
        self.loras = loras or LoraSource(None)
        self.dit_weight_dtype = dit_weight_dtype  # deployment settings of the DiT (graph/model_chain.py)
        self.torch_compile = torch_compile
        # Retention: a prediction's folder outlives render() so Cog can take the file, and is removed when
        # the next prediction starts (Cog runs one at a time), so at most one finished folder is on disk.
        self._previous_run: Path | None = None
        self.image_policy = image_policy or FetchPolicy(MAX_IMAGE_BYTES)
        self.serve_image_to_video = serve_image_to_video
        self.serve_upscale = serve_upscale
        self.stages = Stages(ready={workflow.name: workflow})  # start() adds the siblings it can serve

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> VideoRenderer:
        settings = settings or Settings()
        backend = backend_from_settings(settings)
        if settings.torch_compile and backend.local and gpu_total_bytes(settings.device) is None:
            raise SpeedSettingRefused(
                "HV_TORCH_COMPILE=true needs a GPU: on the CPU each new shape compiles for tens of seconds and runs no "
                "faster. Unset it, or run on a GPU"
            )
        return cls(
            backend.runtime,
            load_workflow(settings.workflow, settings.workflows_dir),
            settings.output_dir,
            JobLimits.from_settings(settings, backend.comfyui_path),
            # The weights and locked nodes live with the ComfyUI that runs the graph: a remote one has its own.
            supply=SupplyChain.from_settings(settings) if backend.local else NO_SUPPLY_CHECKS,
            tap_frames=backend.local,
            loras=LoraSource.from_settings(settings, local=backend.local),
            dit_weight_dtype=settings.dit_weight_dtype,
            torch_compile=settings.torch_compile,
            image_policy=FetchPolicy.from_settings(settings, MAX_IMAGE_BYTES),
            serve_image_to_video=settings.image_to_video,
            serve_upscale=settings.upscale,
        )

    def start(self) -> None:
        stages = Stages()
        for workflow in self.workflow.family():
            reason = switched_off(self.workflow, workflow, self.serve_image_to_video, self.serve_upscale)
            if reason is None and workflow is not self.workflow:
                reason = self.supply.unavailable(workflow.graph)
            if reason:
                log.warning("workflow %s (%s) is not served: %s", workflow.name, workflow.title, reason)
                stages.off[workflow.name] = reason
                continue
            self.supply.before_boot(workflow.graph)
            stages.ready[workflow.name] = workflow
        self.runtime.start()
        schemas = self.runtime.node_schemas()
        for workflow in stages.ready.values():
            self.supply.after_boot(workflow.graph, self.runtime, schemas)
            check_bindings(workflow, schemas, graph_input_types(), graph_input_ranges())
            self._check_dit_channels(workflow)
            if workflow.takes_image:  # its LoadImage must find a file to validate against
                self.runtime.upload_input(_placeholder_image(self.output_root), START_IMAGE_NAME)
            # As it will run: the deployment's DiT settings (weight dtype, compile) must be ones this ComfyUI takes.
            self.runtime.validate(apply_dit_settings(workflow.graph, self.dit_weight_dtype, self.torch_compile))
        self.stages = stages
        unbound = sorted(set(graph_input_types()) - set(self.workflow.bindings))
        if unbound and not self.workflow.model:  # a model's workflow refuses what it cannot use instead
            log.warning("workflow %s ignores these inputs: %s", self.workflow.name, ", ".join(unbound))

    def _check_dit_channels(self, workflow: Workflow) -> None:
        """A DiT with the wrong input channels can run and silently ignore the image (HunyuanImageToVideo's
        "v1 (concat)" on a 16-channel text-to-video DiT): refuse it at setup."""
        for node_id, wanted in workflow.dit_in_channels.items():
            file_name = workflow.graph[node_id]["inputs"]["unet_name"]
            found = self.supply.dit_in_channels(file_name)
            if found is not None and found != wanted:
                raise WrongModelFile(
                    f"workflow {workflow.name} ({workflow.title}) needs a DiT with {wanted} input channels at node "
                    f"{node_id}, but {file_name} has {found} (a text-to-video DiT would ignore the start image): "
                    "put the image-to-video DiT the manifest names there"
                )

    def render(self, request: VideoRequest, log_line: LogSink = print) -> Rendered:
        started = time.perf_counter()
        workflow = choose_workflow(self.workflow, request, self.stages)  # before anything runs
        self._discard_previous()
        run_id = uuid.uuid4().hex
        run_dir = self.output_root / run_id
        prefix = f"{workflow.name}_{run_id[:12]}"
        try:  # failure, time limit, or Cog's cancel: nothing of this run is worth keeping
            run = self._prepare(workflow, request, run_dir, prefix, log_line)
            clock = StageClock()
            result = self.runtime.run(run.graph, run_dir, on_progress=clock.wrap(ProgressLog(log_line)),
                                      timeout=self.limits.timeout)
            encode_started = time.perf_counter()
            video = self._encode(workflow, run, result, run_dir / prefix)
            encode_seconds = time.perf_counter() - encode_started
        except OutOfMemory as error:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise RenderOutOfMemory(out_of_memory_advice(error, run.request)) from error
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        _keep_only(run_dir, video)  # intermediates (the tap's frames or the workflow's own video, temp files) go now
        self._previous_run = run_dir
        request = run.request
        total = time.perf_counter() - started
        timings = {"comfyui_seconds": result.execution_seconds, "encode_seconds": encode_seconds, "total_seconds": total}
        stages = {**clock.seconds(encode_started), "encode": encode_seconds, "total": total}
        if run.lora is not None:
            stages["lora_fetch"] = run.lora.seconds
        lora_metrics = self.loras.report(request, run.lora, result.lora_fits, log_line)
        log_line(summary_line(timings, request.width, request.height, request.num_frames, int(request.seed), video.name))
        return Rendered(
            video=video,
            seed=int(request.seed),
            request=request.model_copy(update={"image": _shown_image(request.image)}),
            run_dir=run_dir,
            produced_files=result.files,
            timings=timings,
            metrics=render_metrics(int(request.seed), int(request.steps), request.cache, result.cache_steps_skipped,
                                   stages, lora_metrics),
        )

    def _prepare(self, workflow: Workflow, request: VideoRequest, run_dir: Path, prefix: str,
                 log_line: LogSink) -> _PreparedRun:
        """The request made concrete (start image, defaults, seed), checked against the limits, and the graph this
        run executes: bindings filled in, then the DiT settings, the LoRA, the cache and the frame tap."""
        image = None
        if request.image is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            image = decode_image(image_bytes(request.image, run_dir, self.image_policy))
            if not {"width", "height"} & request.given:
                model_defaults = input_defaults(workflow.defaults)
                width, height = size_for_aspect(image.size, (model_defaults["width"], model_defaults["height"]))
                request = request.model_copy(update={"width": width, "height": height})
        request = request.with_defaults(workflow.defaults).with_seed()
        refuse_over_limits(workflow, request)
        # Before ComfyUI runs: a job that cannot fit fails in milliseconds.
        stage_scale = max((t.scale for t in workflow.bindings.get("width", ())), default=1.0)
        trained_max = workflow.limits.get("max_pixel_frames")
        self.limits.check(request, stage_scale, int(trained_max) if trained_max else None, workflow.title)
        log_line(f"seed: {request.seed}")
        values = request.model_dump(include=set(graph_input_types()))
        if image is not None:
            fitted = run_dir / "start_image.png"
            fit_image(image, request.width, request.height).save(fitted)
            values["image"] = self.runtime.upload_input(fitted, START_IMAGE_NAME)
            log_line(f"start image: {image.size[0]}x{image.size[1]} fitted to {request.width}x{request.height}")
        graph = workflow.render(values, filename_prefix=prefix)
        graph = apply_dit_settings(graph, self.dit_weight_dtype, self.torch_compile)
        lora = self.loras.resolve(request, log_line)
        graph = add_lora(graph, lora.name, request.lora_strength) if lora is not None else graph
        graph = add_cache(graph, request.cache)
        graph, tap = add_frame_tap(graph, f"{prefix}_frame") if self.tap_frames else (graph, None)
        return _PreparedRun(request, graph, tap, lora)

    def _encode(self, workflow: Workflow, run: _PreparedRun, result: RunResult, stem: Path) -> Path:
        """The delivered file: encoded from the tap's exact frames, or (no tap) re-encoded from the workflow's video."""
        request = run.request
        if run.tap is not None:
            frames = tapped_file(run.tap, result.ui_outputs, result.files)
            if frames is None:
                raise RenderFailed(
                    f"workflow {workflow.name!r} finished but its frames were not saved (files: "
                    f"{result.files}); check the ComfyUI log above for the frame tap's SaveAnimatedPNG"
                )
            return encode_frames(frames, run.tap.fps, stem, request.output_format, request.crf)
        videos = [path for path in result.files if path.suffix.lower() in VIDEO_SUFFIXES]
        if not videos:
            raise RenderFailed(
                f"workflow {workflow.name!r} finished but saved no video (files: {result.files}); "
                "its output node must be a video saver such as SaveVideo"
            )
        return transcode(videos[0], request.output_format, request.crf)

    def cancel(self) -> None:
        self.runtime.interrupt()

    def discard(self, rendered: Rendered) -> None:
        shutil.rmtree(rendered.run_dir, ignore_errors=True)

    def settle(self, rendered: Rendered, delivered_elsewhere: bool) -> None:
        """After delivery: a video that now lives elsewhere (a bucket) leaves the disk at once; a file Cog still
        has to send stays until the next prediction starts."""
        if delivered_elsewhere:
            self.discard(rendered)

    def keep(self, rendered: Rendered) -> None:
        """Exempt this prediction's folder from retention, e.g. when its upload failed and the error names
        the file: it stays on disk until someone removes it."""
        if self._previous_run == rendered.run_dir:
            self._previous_run = None

    def _discard_previous(self) -> None:
        if self._previous_run is not None:
            shutil.rmtree(self._previous_run, ignore_errors=True)
            self._previous_run = None

    def close(self) -> None:
        self.runtime.close()


def _shown_image(image: str | Path | None) -> str | None:
    """The start image as the record keeps it: a data URI is replaced by its size (it can be megabytes)."""
    if image is None:
        return None
    if isinstance(image, str) and image[:5].lower() == "data:":
        return f"{image.split(',', 1)[0]},... ({len(image):,} characters)"
    return str(image)


def _placeholder_image(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".start_image_placeholder.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(path)
    return path


def _keep_only(run_dir: Path, keep: Path) -> None:
    for path in run_dir.iterdir():
        if path == keep or path in keep.parents:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
