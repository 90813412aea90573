"""One family, measured in a process of its own (the kit's child): `python -m bench.gpu_kit.measure SPEC.json`.

A process per family gives honest start-up figures (process start -> READY -> first video, with nothing
imported or loaded before) and hands the GPU back whole before the next family. Everything here goes through
the product: Settings from HV_* variables, VideoService.from_settings and start() (the boot check of the weights,
the custom-node check, the bindings check, validation), VideoService.render, timed by a subscriber of the run's
typed events (RunTimer). Each figure is printed at once as a
`GPUKIT {json}` line, so a run cut off by a time limit still reports what it measured.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import importlib.util
import json
import logging
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

KIT_DIR = Path(__file__).resolve().parent
NO_PYAV_DIR = KIT_DIR / "no_pyav"
LINE_PREFIX = "GPUKIT "


def emit(kind: str, **fields: Any) -> None:
    print(LINE_PREFIX + json.dumps({"kind": kind, **fields}), flush=True)


def use_placeholder_pyav_if_absent() -> bool:
    """True when PyAV is missing and the named placeholder stands in (ComfyUI imports av at module level)."""
    try:
        if importlib.util.find_spec("av") is not None:
            return False
    except ImportError:  # a finder that refuses the name
        pass
    sys.path.insert(0, str(NO_PYAV_DIR))
    return True


@dataclasses.dataclass
class Timed:
    label: str
    size: str
    steps: int
    total_s: float
    step_s: list[float]  # step k-1 -> k, k >= 2 (step 1 also carries the model's move to the GPU)
    first_step_s: float | None
    vae_decode_s: float | None
    peak_gpu_gib: float | None
    comfyui_s: float
    encode_s: float | None
    node_s: dict[str, float]  # node id + class -> seconds from its start to the next node's start
    cache_steps_skipped: int | None = None  # EasyCache's own count, as the product's metrics report it

    @property
    def seconds_per_step(self) -> float | None:
        return statistics.median(self.step_s) if self.step_s else None

    def record(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "seconds_per_step": self.seconds_per_step}


def _peak_reset() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / (1 << 30)


class RunTimer:
    """A subscriber of one run's events: when each node started and when each sampler step was reported."""

    def __init__(self) -> None:
        self.nodes: list[tuple[float, str, str]] = []  # (at, node id, class)
        self.steps: list[tuple[float, int]] = []  # (at, step) of SamplerCustomAdvanced

    def __call__(self, event) -> None:
        from comfy_runtime.backends.contract import NodeStarted, StepProgress

        if isinstance(event, NodeStarted):
            self.nodes.append((event.at, event.node_id, event.class_type))
        elif isinstance(event, StepProgress) and event.class_type == "SamplerCustomAdvanced":
            self.steps.append((event.at, event.step))


def timed_render(service, request_fields: dict[str, Any], label: str, encode_skipped: bool) -> Timed:
    """One render through VideoService.render, timed from the product's own progress events."""
    from comfy_runtime.job.request import VideoRequest

    timer = RunTimer()
    request = VideoRequest(**request_fields)  # the product's input rules apply to every kit render
    _peak_reset()
    started = time.perf_counter()
    rendered = service.render(request, subscribers=(timer,))
    ended = time.perf_counter()
    peak = _peak_gib()
    nodes = timer.nodes
    node_s = {}
    # The last node ends with ComfyUI's execution, which starts at the first node, not at `started` (the
    # service plans the run first): counted from `started`, the last node (often VAEDecode) came out negative.
    executed_until = (nodes[0][0] if nodes else started) + rendered.timings["comfyui_seconds"]
    for index, (t, node_id, cls) in enumerate(nodes):
        following = nodes[index + 1][0] if index + 1 < len(nodes) else max(executed_until, t)
        node_s[f"{node_id} {cls}"] = following - t
    steps = timer.steps
    step_s = [b[0] - a[0] for a, b in zip(steps, steps[1:], strict=False) if b[1] == a[1] + 1]
    sampler_start = next((t for t, _, cls in nodes if cls == "SamplerCustomAdvanced"), None)
    first_step = steps[0][0] - sampler_start if steps and sampler_start is not None else None
    decode = next((s for key, s in node_s.items() if key.split()[1].startswith("VAEDecode")), None)
    service.discard(rendered)
    return Timed(
        label=label, size=f"{rendered.request.width}x{rendered.request.height}x{rendered.request.num_frames}",
        steps=int(rendered.request.steps),
        total_s=ended - started, step_s=step_s, first_step_s=first_step, vae_decode_s=decode, peak_gpu_gib=peak,
        comfyui_s=rendered.timings["comfyui_seconds"],
        encode_s=None if encode_skipped else rendered.timings["encode_seconds"], node_s=node_s,
        cache_steps_skipped=rendered.metrics.get("cache_steps_skipped"),
    )


class LoadTimer:
    """Times ComfyUI's comfy.utils.load_torch_file per file (calls straight through): disk -> host memory."""

    def __init__(self) -> None:
        import comfy.utils

        self.loads: list[dict[str, Any]] = []
        original = comfy.utils.load_torch_file

        def timed(ckpt, *args, **kwargs):
            started = time.perf_counter()
            result = original(ckpt, *args, **kwargs)
            seconds = time.perf_counter() - started
            size = Path(ckpt).stat().st_size
            self.loads.append({"file": Path(ckpt).name, "bytes": size, "seconds": seconds, "gb_per_s": size / seconds / 1e9})
            return result

        comfy.utils.load_torch_file = timed  # the loaders (comfy.sd, nodes.py) call it as comfy.utils.load_torch_file


def variant_graph(graph: dict[str, Any], feature: str, on_gpu: bool) -> dict[str, Any]:
    """The product graph with one speed feature added, the way a user adds it in ComfyUI."""
    graph = copy.deepcopy(graph)
    (loader,) = [nid for nid, node in graph.items() if node["class_type"] == "UNETLoader"]
    shifts = [nid for nid, node in graph.items() if node["class_type"] == "ModelSamplingSD3"]
    guiders = [nid for nid, node in graph.items() if node["class_type"] in ("BasicGuider", "CFGGuider")]
    if feature == "fp8":
        graph[loader]["inputs"]["weight_dtype"] = "fp8_e4m3fn_fast" if on_gpu else "fp8_e4m3fn"
        return graph
    if feature == "step_distilled":  # its settings are request inputs (steps, guidance, flow_shift): same graph
        return graph
    if len(shifts) != 1 or not guiders:
        raise ValueError(f"{feature}: expected one ModelSamplingSD3 feeding the guider(s); found {shifts}, {guiders}")
    node_id = f"gpukit_{feature}"
    if feature == "easycache":
        graph[node_id] = {"class_type": "EasyCache", "inputs": {
            "model": [shifts[0], 0], "reuse_threshold": 0.2, "start_percent": 0.15, "end_percent": 0.95, "verbose": False}}
    elif feature == "compile":
        graph[node_id] = {"class_type": "TorchCompileModel", "inputs": {"model": [shifts[0], 0], "backend": "inductor"}}
    else:
        raise ValueError(f"unknown feature {feature!r}")
    for guider in guiders:
        graph[guider]["inputs"]["model"] = [node_id, 0]
    return graph


def executor_seconds(model, graph: dict[str, Any], scratch: Path) -> float:
    """The same graph through ComfyUI's own validate_prompt + PromptExecutor, as its /prompt worker runs it:
    same booted ComfyUI, same executor (so the same cached models), no product code around it."""
    import execution
    import folder_paths

    runtime = model.runtime
    scratch.mkdir(parents=True, exist_ok=True)
    prompt_id = uuid.uuid4().hex

    async def run() -> None:
        ok, error, outputs, node_errors = await execution.validate_prompt(prompt_id, graph, None)
        if not ok:
            raise RuntimeError(f"ComfyUI rejected the graph: {error} {node_errors}")
        await runtime._executor.execute_async(graph, prompt_id, {"client_id": "gpukit"}, outputs)

    def on_comfy_thread() -> float:
        folder_paths.set_output_directory(str(scratch))
        started = time.perf_counter()
        asyncio.run(run())
        return time.perf_counter() - started

    try:
        return runtime._thread.submit(on_comfy_thread).result()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def preview_cost(latent_format: str, size: dict[str, int], scratch: Path, encode_skipped: bool,
                 repeats: int = 3) -> dict[str, Any]:
    """One live preview at this size (render/preview.py: latent2rgb and upscale on the device, the encode on the
    CPU: mp4, or WebP where PyAV is absent), timed on a random latent of the family's shape; the median of `repeats`."""
    import comfy.latent_formats
    import torch

    from comfy_runtime.render.preview import UPSCALE_BY_FORMAT, encode_preview, latent_to_frames

    fmt = getattr(comfy.latent_formats, latent_format)()
    spatial = 16 if latent_format == "HunyuanVideo15" else 8
    shape = (fmt.latent_channels, (size["num_frames"] - 1) // 4 + 1, size["height"] // spatial, size["width"] // spatial)
    on_gpu = torch.cuda.is_available()
    latent = torch.randn(shape, device="cuda" if on_gpu else "cpu", dtype=torch.bfloat16 if on_gpu else torch.float32)
    times, frames = [], None
    fmt_name = "webp" if encode_skipped else "mp4"
    scratch.mkdir(parents=True, exist_ok=True)
    for index in range(repeats):
        if on_gpu:
            torch.cuda.synchronize()
        started = time.perf_counter()
        frames = latent_to_frames(latent, fmt.latent_rgb_factors, fmt.latent_rgb_factors_bias,
                                  UPSCALE_BY_FORMAT[latent_format])
        # No PyAV on this machine: the animated WebP (Pillow) instead, which costs the CPU more than the mp4.
        encode_preview(frames, "webp" if encode_skipped else "mp4", scratch / f"preview{index}.{fmt_name}")
        times.append(time.perf_counter() - started)
    assert frames is not None
    return {"seconds": statistics.median(times), "runs": times, "frames": int(frames.shape[0]),
            "width": int(frames.shape[2]), "height": int(frames.shape[1]), "encoded": fmt_name}


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    spawned_at = float(spec["spawned_at"])
    deadline = float(spec["deadline"])
    encode_skipped = use_placeholder_pyav_if_absent()
    # Boot phases, as bench/boot_lean_vs_full.py splits them: torch's import, ComfyUI's modules (boot_comfyui, with
    # HV_BOOT's deferred imports), then the rest of setup (node modules, supply checks, bindings, validation).
    phase_started = time.time()
    import torch

    torch_done = time.time()
    from comfy_runtime.backends.embedded import boot_comfyui
    from comfy_runtime.settings import Settings
    from comfy_runtime.supply.comfyui_source import resolve_comfyui_path

    boot_settings = Settings()
    boot_comfyui(resolve_comfyui_path(boot_settings).resolve(), boot_settings.device,
                 defer_imports=boot_settings.boot == "lean", attention=boot_settings.attention)
    comfy_done = time.time()

    from comfy_runtime.delivery.deliverer import FileDelivery
    from comfy_runtime.graph.frame_tap import add_frame_tap
    from comfy_runtime.job.params import graph_input_types
    from comfy_runtime.job.request import VideoRequest
    from comfy_runtime.render import encode as encode_module
    from comfy_runtime.render.served_model import ServedModel
    from comfy_runtime.service import VideoService
    from comfy_runtime.settings import Settings

    if encode_skipped:
        # No PyAV here (bench/gpu_kit/no_pyav): the run keeps the lossless frames it tapped as its
        # output and the figures say encoding was skipped (a CPU cost, measured by the CPU benches).
        encode_module.encode_frames = lambda frames, fps, stem, output_format, crf: frames
    settings = Settings(warm_start=False)  # the first render's figures are the cold start's
    service = VideoService.from_settings(settings, FileDelivery())
    service.start()
    model = service.model
    ready_at = time.time()
    emit("ready", seconds_from_spawn=ready_at - spawned_at, encode_skipped=encode_skipped)
    emit("boot", boot=settings.boot, attention=settings.attention, ready_s=ready_at - spawned_at, phases={
        "interpreter": phase_started - spawned_at, "torch": torch_done - phase_started,
        "comfy_modules": comfy_done - torch_done, "setup_rest": ready_at - comfy_done})
    if spec.get("boot_only"):
        service.close()
        return 0
    on_gpu = torch.cuda.is_available()
    loads = LoadTimer()
    logging.getLogger().setLevel(logging.INFO)
    base = {"prompt": spec["prompt"], "steps": spec["steps"], "guidance": 6.0, "flow_shift": 7.0, "fps": 24,
            "output_format": "mp4", "crf": 18}
    warm: Timed | None = None
    for index, size in enumerate(spec["sizes"]):
        fields = {**base, "width": size["width"], "height": size["height"], "num_frames": size["num_frames"]}
        first = timed_render(service, {**fields, "seed": 1}, "first" if index == 0 else "first_at_size", encode_skipped)
        record = first.record()
        if index == 0:
            record["seconds_from_spawn"] = time.time() - spawned_at
            record["loads"] = loads.loads
        emit("render", **record)
        this_warm = timed_render(service, {**fields, "seed": 2}, "warm", encode_skipped)
        emit("render", **this_warm.record())
        if spec.get("latent_format") and not spec.get("renders_only"):
            emit("preview", size=this_warm.size, **preview_cost(spec["latent_format"], size,
                                                                Path(settings.output_dir), encode_skipped))
        if index == 0 and not spec.get("renders_only"):
            warm = this_warm
            # Interleaved pairs (renderer, executor) on the same graph with fresh seeds, so drift (clocks, caches)
            # hits both sides alike; the overhead is the difference of the medians.
            product, comfy_own = [warm.total_s], []
            for pair in range(int(spec.get("overhead_pairs", 1))):
                values = VideoRequest(**{**fields, "seed": 100 + pair}).model_dump(include=set(graph_input_types()))
                graph = model.workflow.render(values, filename_prefix="gpukit_executor")
                graph, _ = add_frame_tap(graph, f"gpukit_executor_{uuid.uuid4().hex[:8]}")
                comfy_own.append(executor_seconds(model, graph, Path(settings.output_dir) / "executor"))
                if pair + 1 < int(spec.get("overhead_pairs", 1)):
                    product.append(timed_render(service, {**fields, "seed": 200 + pair}, "warm_pair", encode_skipped).total_s)
            emit("executor", size=first.size, seconds=statistics.median(comfy_own), runs=comfy_own,
                 renderer_seconds=statistics.median(product), renderer_runs=product,
                 overhead_seconds=statistics.median(product) - statistics.median(comfy_own),
                 encode_seconds=None if encode_skipped else warm.encode_s)
            for feature in spec["features"]:
                variant = dataclasses.replace(model.workflow, graph=variant_graph(model.workflow.graph, feature, on_gpu))
                runner = VideoService(ServedModel(model.runtime, variant, settings.output_dir, model.limits, tap_frames=True))
                if feature in spec["validate_only"]:
                    model.runtime.validate(variant.graph)
                    emit("feature", feature=feature, status="validated only (not run at this scale)")
                    continue
                feature_fields = fields
                if feature == "step_distilled":
                    if spec.get("family") not in spec.get("step_distilled_families", ()):
                        emit("feature", feature=feature, status="n/a: no step-distilled model of this family")
                        continue
                    feature_fields = {**fields, **spec["step_distilled_request"]}
                runs = 2 if feature in ("compile", "fp8") else 1  # the first one compiles or converts the weights
                estimate = warm.total_s * runs + (120.0 if feature == "compile" else 0.0)
                if time.time() + estimate > deadline:
                    emit("feature", feature=feature, status=f"skipped: ~{estimate:.0f} s would pass the deadline")
                    continue
                loads.loads.clear()
                try:
                    timed = [timed_render(runner, {**feature_fields, "seed": 10 + run}, f"{feature}_{run + 1}",
                                          encode_skipped) for run in range(runs)]
                except Exception as error:  # e.g. inductor without a C compiler: the other figures still count
                    emit("feature", feature=feature, status=f"failed: {type(error).__name__}: {str(error)[:500]}")
                    continue
                emit("feature", feature=feature, status="measured", runs=[t.record() for t in timed],
                     loads=list(loads.loads),
                     easycache_skipped=[(t.cache_steps_skipped, t.steps) for t in timed if t.cache_steps_skipped is not None])
    emit("done", seconds_from_spawn=time.time() - spawned_at)
    service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
