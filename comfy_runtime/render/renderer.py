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

from comfy_runtime.backends.contract import ComfyRuntime, NodeStarted, ProgressEvent, StepProgress
from comfy_runtime.errors import HunyuanVideoError, OutOfMemory
from comfy_runtime.graph.frame_tap import add_frame_tap, tapped_file
from comfy_runtime.graph.workflow import Workflow, check_bindings, load_workflow
from comfy_runtime.job.limits import JobLimits, RenderOutOfMemory, out_of_memory_advice
from comfy_runtime.job.request import (
    FLOW_SHIFT,
    FPS,
    GUIDANCE,
    MAX_FRAMES,
    MAX_SEED,
    MAX_SIZE,
    MIN_FRAMES,
    MIN_SIZE,
    STEPS,
    VideoRequest,
)
from comfy_runtime.render.encode import encode_frames, transcode
from comfy_runtime.settings import Settings
from comfy_runtime.supply.boot_checks import SupplyChain

log = logging.getLogger(__name__)
LogSink = Callable[[str], None]
VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mov", ".mkv")

INPUT_TYPES: dict[str, type] = {
    "prompt": str,
    "width": int,
    "height": int,
    "num_frames": int,
    "steps": int,
    "guidance": float,
    "flow_shift": float,
    "fps": int,
    "seed": int,
}
INPUT_RANGES = {
    "width": (MIN_SIZE, MAX_SIZE),
    "height": (MIN_SIZE, MAX_SIZE),
    "num_frames": (MIN_FRAMES, MAX_FRAMES),
    "steps": (STEPS.ge, STEPS.le),
    "guidance": (GUIDANCE.ge, GUIDANCE.le),
    "flow_shift": (FLOW_SHIFT.ge, FLOW_SHIFT.le),
    "fps": (FPS.ge, FPS.le),
    "seed": (0, MAX_SEED),
}


@dataclass(frozen=True)
class Rendered:
    video: Path
    seed: int
    run_dir: Path
    # Every file the run produced, as a record: all but `video` are deleted once it is written.
    produced_files: list[Path]
    timings: dict[str, float] = field(default_factory=dict)


class RenderFailed(HunyuanVideoError, RuntimeError):
    pass


class VideoRenderer:
    def __init__(self, runtime: ComfyRuntime, workflow: Workflow, output_root: Path, limits: JobLimits | None = None):
        self.runtime = runtime
        self.workflow = workflow
        self.output_root = Path(output_root).resolve()
        self.limits = limits or JobLimits.default()
        self.supply: SupplyChain | None = None  # weights + locked nodes, checked in start() (from_settings sets it)
        # The lossless frame tap (frame_tap.py) is ~90 MB at 848x480x73: cheap as a local file deleted at once,
        # but a remote server would keep every one (ComfyUI has no delete API) and send each over /view.
        # A remote run keeps its SaveVideo file instead, re-encoded for delivery.
        self.tap_frames = True
        # Retention: a prediction's folder outlives render() so Cog can take the file, and is removed when
        # the next prediction starts (Cog runs one at a time), so at most one finished folder is on disk.
        self._previous_run: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> VideoRenderer:
        from comfy_runtime.backends.embedded import EmbeddedRuntime
        from comfy_runtime.supply.comfyui_source import resolve_comfyui_path

        settings = settings or Settings()
        runtime: ComfyRuntime
        if settings.backend == "remote":
            from comfy_runtime.backends.remote import RemoteRuntime
            from comfy_runtime.supply.comfyui_source import ComfyUISourceError

            runtime = RemoteRuntime(settings.comfyui_url, startup_timeout=settings.comfyui_startup_timeout)
            try:  # a local copy only lends its tokenizers to the prompt-length check; the server needs none
                comfyui_path = resolve_comfyui_path(settings)
            except ComfyUISourceError:
                comfyui_path = None
        else:
            comfyui_path = resolve_comfyui_path(settings)
            runtime = EmbeddedRuntime(
                comfyui_path=comfyui_path,
                models_dir=settings.models_dir,
                work_dir=settings.output_dir / ".work",
                device=settings.device,
                extra_custom_nodes=settings.extra_custom_nodes,
            )
        renderer = cls(
            runtime, load_workflow(settings.workflow, settings.workflows_dir), settings.output_dir,
            JobLimits.from_settings(settings, comfyui_path),
        )
        # The weights and locked nodes live with the ComfyUI that runs the graph: a remote one has its own.
        renderer.supply = SupplyChain.from_settings(settings) if settings.backend == "embedded" else None
        renderer.tap_frames = settings.backend == "embedded"
        return renderer

    def start(self) -> None:
        if self.supply is not None:
            self.supply.before_boot(self.workflow.graph)
        self.runtime.start()
        schemas = self.runtime.node_schemas()
        if self.supply is not None:
            self.supply.after_boot(self.workflow.graph, self.runtime, schemas)
        check_bindings(self.workflow, schemas, INPUT_TYPES, INPUT_RANGES)
        self.runtime.validate(self.workflow.graph)
        unbound = sorted(set(INPUT_TYPES) - set(self.workflow.bindings))
        if unbound:
            log.warning("workflow %s ignores these inputs: %s", self.workflow.name, ", ".join(unbound))

    def render(self, request: VideoRequest, log_line: LogSink = print) -> Rendered:
        started = time.perf_counter()
        request = request.with_seed()
        self.limits.check(request)  # before anything runs: a job that cannot fit fails in milliseconds
        log_line(f"seed: {request.seed}")
        self._discard_previous()
        run_id = uuid.uuid4().hex
        run_dir = self.output_root / run_id
        values = request.model_dump(exclude={"output_format", "crf"})
        prefix = f"{self.workflow.name}_{run_id[:12]}"
        graph = self.workflow.render(values, filename_prefix=prefix)
        graph, tap = add_frame_tap(graph, f"{prefix}_frame") if self.tap_frames else (graph, None)
        try:
            result = self.runtime.run(graph, run_dir, on_progress=_progress_logger(log_line), timeout=self.limits.timeout)
            encode_started = time.perf_counter()
            if tap is not None:
                frames = tapped_file(tap, result.ui_outputs, result.files)
                if frames is None:
                    raise RenderFailed(
                        f"workflow {self.workflow.name!r} finished but its frames were not saved (files: "
                        f"{result.files}); check the ComfyUI log for node {tap.node_id} (SaveAnimatedPNG)"
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
        return Rendered(
            video=video,
            seed=int(request.seed),
            run_dir=run_dir,
            produced_files=result.files,
            timings={"comfyui_seconds": result.execution_seconds, "encode_seconds": encode_seconds, "total_seconds": total},
        )

    def cancel(self) -> None:
        self.runtime.interrupt()

    def discard(self, rendered: Rendered) -> None:
        shutil.rmtree(rendered.run_dir, ignore_errors=True)

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


def _progress_logger(log_line: LogSink) -> Callable[[ProgressEvent], None]:
    def on_progress(event: ProgressEvent) -> None:
        if isinstance(event, NodeStarted):
            log_line(f"node {event.node_id} {event.class_type}")
        elif isinstance(event, StepProgress):
            log_line(f"{event.class_type or 'node ' + str(event.node_id)} step {event.step}/{event.total}")

    return on_progress
