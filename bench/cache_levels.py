"""EasyCache levels and warm start on the tiny real HunyuanVideo DiT (CPU): a script, not a test.

Cache levels: per size, DiT forward calls, sampling time and mean |pixel difference| against the uncached render
of the same seed. Warm start: setup, first and second prediction latency of a fresh process, with and without
HV_WARM_START (each in its own process: ComfyUI keeps loaded models for the life of one).
    .venv/bin/python bench/cache_levels.py [--sizes 64x64x9,256x256x33] [--steps 30] [--warm-size 256x256x17] [--warm-steps 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LEVELS = ("off", "fast", "faster", "fastest")


def _environment(tmp: Path) -> dict[str, str]:
    from bench.gpu_kit.families import by_name
    from bench.gpu_kit.kit import derive_workflow
    from bench.harness import FIXTURE_CUSTOM_NODES

    workflows = derive_workflow(by_name("hunyuan_video"), "tiny", tmp / "workflows")
    return {"HV_MODELS_DIR": str(tmp / "models"), "HV_OUTPUT_DIR": str(tmp / "outputs"), "HV_DEVICE": "cpu",
            "HV_EXTRA_CUSTOM_NODES": json.dumps([str(FIXTURE_CUSTOM_NODES)]), "HV_WORKFLOW": "hunyuan_t2v",
            "HV_WORKFLOWS_DIR": str(workflows), "HV_WEIGHTS_MODE": "off", "HV_IMAGE_TO_VIDEO": "false",
            "HV_WEIGHTS_MANIFEST": str(tmp / "empty.manifest")}


def _service(env: dict[str, str]):
    os.environ.update(env)
    from comfy_runtime.service import VideoService

    return VideoService.from_settings()


def _write_dit(tmp: Path) -> None:
    from bench.gpu_kit.families import by_name
    from bench.gpu_kit.models import write_tiny_dit
    from comfy_runtime.backends.embedded import boot_comfyui
    from comfy_runtime.settings import Settings
    from comfy_runtime.supply.comfyui_source import resolve_comfyui_path

    boot_comfyui(resolve_comfyui_path(Settings()).resolve(), "cpu")
    write_tiny_dit(tmp / "models" / "diffusion_models" / by_name("hunyuan_video").dit_file("tiny"), seed=0)


def cache_levels(sizes: list[tuple[int, int, int]], steps: int) -> None:
    import numpy as np

    from comfy_runtime.job.request import VideoRequest

    def decode_frames(path: Path) -> list:
        import av

        with av.open(str(path)) as container:
            return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "empty.manifest").write_text("")
        service = _service(_environment(tmp))
        _write_dit(tmp)
        service.start()
        from comfy.ldm.hunyuan_video.model import HunyuanVideo

        calls = []
        original = HunyuanVideo._forward

        def counting(self, *args, **kwargs):
            calls.append(1)
            return original(self, *args, **kwargs)

        HunyuanVideo._forward = counting
        # One throw-away render first: the first sampling also moves the model onto the device.
        service.predict(VideoRequest(prompt="warm", width=64, height=64, num_frames=1, steps=1, seed=0), log_line=lambda line: None)
        print(f"tiny v1 DiT, {steps} steps, {os.cpu_count()} cores (shared), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(f"{'size':>12} {'cache':>8} {'DiT calls':>10} {'skipped':>8} {'sample s':>9} {'x faster':>9} {'mean |diff|':>12}")
        for width, height, frames in sizes:
            reference = None
            for level in LEVELS:
                calls.clear()
                request = VideoRequest(prompt="a red fox running through fresh snow", width=width, height=height,
                                       num_frames=frames, steps=steps, seed=7, cache=level)
                delivered = service.predict(request, log_line=lambda line: None)
                pixels = np.stack(decode_frames(delivered.file)).astype(np.int16)
                sample = delivered.metrics["timings.sample"]
                if reference is None:
                    reference = (pixels, sample)
                difference = float(np.abs(pixels - reference[0]).mean())
                print(f"{f'{width}x{height}x{frames}':>12} {level:>8} {len(calls):>10} "
                      f"{delivered.metrics.get('cache_steps_skipped', 0):>8} {sample:>9.2f} {reference[1] / sample:>9.2f} "
                      f"{f'{difference:.2f}/255':>12}")
        service.close()


def warm_child(warm: bool, size: tuple[int, int, int], steps: int) -> None:
    """One fresh process: setup, then two predictions; prints their seconds as JSON."""
    from comfy_runtime.job.request import VideoRequest

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "empty.manifest").write_text("")
        env = {**_environment(tmp), "HV_WARM_START": "true" if warm else "false"}
        service = _service(env)
        _write_dit(tmp)
        started = time.perf_counter()
        service.start()
        setup = time.perf_counter() - started
        latencies = []
        width, height, frames = size
        for seed in (1, 2):
            started = time.perf_counter()
            service.predict(VideoRequest(prompt="a red fox", width=width, height=height, num_frames=frames, steps=steps, seed=seed),
                            log_line=lambda line: None)
            latencies.append(time.perf_counter() - started)
        service.close()
    print(json.dumps({"setup": setup, "first": latencies[0], "second": latencies[1]}))


def warm_start(size: str, steps: int) -> None:
    print(f"warm start: fresh process each, {size}, {steps} steps")
    for warm in (False, True):
        out = subprocess.run([sys.executable, __file__, "--warm-child", "on" if warm else "off",
                              "--warm-size", size, "--warm-steps", str(steps)], check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        figures = json.loads(out)
        print(f"  HV_WARM_START={'true ' if warm else 'false'} setup {figures['setup']:6.2f} s   first prediction "
              f"{figures['first']:6.2f} s   second {figures['second']:6.2f} s   first/second {figures['first'] / figures['second']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="64x64x9,256x256x33")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warm-child", choices=("on", "off"))
    parser.add_argument("--skip-warm", action="store_true")
    parser.add_argument("--warm-size", default="256x256x17", help="WxHxF of the warm-start predictions")
    parser.add_argument("--warm-steps", type=int, default=10)
    args = parser.parse_args()
    if args.warm_child:
        warm_child(args.warm_child == "on", tuple(int(n) for n in args.warm_size.split("x")), args.warm_steps)
    else:
        cache_levels([tuple(int(n) for n in size.split("x")) for size in args.sizes.split(",")], args.steps)
        if not args.skip_warm:
            warm_start(args.warm_size, args.warm_steps)
