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

from comfy_runtime.backends.contract import ComfyRuntime
from comfy_runtime.backends.factory import backend_from_settings
from comfy_runtime.errors import HunyuanVideoError, OutOfMemory
from comfy_runtime.graph.frame_tap import add_frame_tap, tapped_file
from comfy_runtime.graph.model_chain import add_cache, add_lora, apply_dit_settings
from comfy_runtime.graph.workflow import Workflow, check_bindings, load_workflow
from comfy_runtime.job.budget import gpu_total_bytes
from comfy_runtime.job.limits import JobLimits, RenderOutOfMemory, out_of_memory_advice
from comfy_runtime.job.params import graph_input_ranges, graph_input_types
from comfy_runtime.job.request import VideoRequest
from comfy_runtime.render.encode import encode_frames, transcode
from comfy_runtime.render.lora import LoraSource
from comfy_runtime.render.metrics import StageClock, render_metrics
from comfy_runtime.render.progress import ProgressLog, summary_line
from comfy_runtime.settings import Settings
from comfy_runtime.supply.boot_checks import NO_SUPPLY_CHECKS, SupplyChain, SupplyChecks

log = logging.getLogger(__name__)
LogSink = Callable[[str], None]
VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mov", ".mkv")

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
        )

    def start(self) -> None:
        self.supply.before_boot(self.workflow.graph)
        self.runtime.start()
        schemas = self.runtime.node_schemas()
        self.supply.after_boot(self.workflow.graph, self.runtime, schemas)
        check_bindings(self.workflow, schemas, graph_input_types(), graph_input_ranges())
        # As it will run: the deployment's DiT settings (weight dtype, compile) must be ones this ComfyUI takes.
        self.runtime.validate(apply_dit_settings(self.workflow.graph, self.dit_weight_dtype, self.torch_compile))
        unbound = sorted(set(graph_input_types()) - set(self.workflow.bindings))
        if unbound:
            log.warning("workflow %s ignores these inputs: %s", self.workflow.name, ", ".join(unbound))

    def render(self, request: VideoRequest, log_line: LogSink = print) -> Rendered:
        started = time.perf_counter()
        request = request.with_defaults(self.workflow.defaults).with_seed()
        self.limits.check(request)  # before anything runs: a job that cannot fit fails in milliseconds
        log_line(f"seed: {request.seed}")
        self._discard_previous()
        run_id = uuid.uuid4().hex
        run_dir = self.output_root / run_id
        values = request.model_dump(include=set(graph_input_types()))
        prefix = f"{self.workflow.name}_{run_id[:12]}"
        graph = self.workflow.render(values, filename_prefix=prefix)
        graph = apply_dit_settings(graph, self.dit_weight_dtype, self.torch_compile)
        lora = self.loras.resolve(request, log_line)
        graph = add_lora(graph, lora.name, request.lora_strength) if lora is not None else graph
        graph = add_cache(graph, request.cache)
        graph, tap = add_frame_tap(graph, f"{prefix}_frame") if self.tap_frames else (graph, None)
        clock = StageClock()
        try:
            result = self.runtime.run(graph, run_dir, on_progress=clock.wrap(ProgressLog(log_line)), timeout=self.limits.timeout)
            encode_started = time.perf_counter()
            if tap is not None:
                frames = tapped_file(tap, result.ui_outputs, result.files)
                if frames is None:
                    raise RenderFailed(
                        f"workflow {self.workflow.name!r} finished but its frames were not saved (files: "
                        f"{result.files}); check the ComfyUI log above for the frame tap's SaveAnimatedPNG"
                    )
                video = encode_frames(frames, tap.fps, run_dir / prefix, request.output_format, request.crf)
            else:
                videos = [path for path in result.files if path.suffix.lower() in VIDEO_SUFFIXES]
                if not videos:
                    raise RenderFailed(
                        f"workflow {self.workflow.name!r} finished but saved no video (files: {result.files}); "
                        "its output node must be a video saver such as SaveVideo"
                    )
                video = transcode(videos[0], request.output_format, request.crf)
            encode_seconds = time.perf_counter() - encode_started
        except OutOfMemory as error:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise RenderOutOfMemory(out_of_memory_advice(error, request)) from error
        except BaseException:  # failure, time limit, or Cog's cancel: nothing of this run is worth keeping
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        _keep_only(run_dir, video)  # intermediates (the tap's frames or the workflow's own video, temp files) go now
        self._previous_run = run_dir
        total = time.perf_counter() - started
        timings = {"comfyui_seconds": result.execution_seconds, "encode_seconds": encode_seconds, "total_seconds": total}
        stages = {**clock.seconds(encode_started), "encode": encode_seconds, "total": total}
        if lora is not None:
            stages["lora_fetch"] = lora.seconds
        lora_metrics = self.loras.report(request, lora, result.lora_fits, log_line)
        log_line(summary_line(timings, request.width, request.height, request.num_frames, int(request.seed), video.name))
        return Rendered(
            video=video,
            seed=int(request.seed),
            request=request,
            run_dir=run_dir,
            produced_files=result.files,
            timings=timings,
            metrics=render_metrics(int(request.seed), int(request.steps), request.cache, result.cache_steps_skipped,
                                   stages, lora_metrics),
        )

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


def _keep_only(run_dir: Path, keep: Path) -> None:
    for path in run_dir.iterdir():
        if path == keep or path in keep.parents:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
