"""What a live preview costs the sampler, as a ratio to one sampling step.

1. The real thing, tiny: the tiny real HunyuanVideo v1 DiT renders through the real samplers on this CPU with a
   preview after every step (HV_PREVIEW_EVERY=1); each preview's own cost (PreviewReady.seconds: latent2rgb,
   upscale, encode, write) against the mean step time of the same run.
2. At 720p, on this CPU: latent2rgb + upscale + encode of a 720p x 129-frame latent (v1: 16x33x90x160, 1.5:
   32x33x45x80; both previews 33 frames of 320x180), against the published v1 step on one H100 (1,904 s / 50 steps
   = 38.1 s, xDiT's figure) and at the default HV_PREVIEW_EVERY. On a GPU the matmul and upscale run there and
   only the encode stays on the CPU, so this is an upper bound; the GPU kit's `preview` row measures it there.

    .venv/bin/python bench/preview_cost.py [--size 64x64x9] [--steps 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import FIXTURE_CUSTOM_NODES, machine_line  # noqa: E402

H100_V1_720P_STEP_SECONDS = 1904 / 50  # xDiT, HunyuanVideo v1 1280x720x129, 50 steps, one H100
LATENTS_720P = {"HunyuanVideo": (16, 33, 90, 160), "HunyuanVideo15": (32, 33, 45, 80)}


def tiny_render(size: tuple[int, int, int], steps: int) -> tuple[float, float, int]:
    """(mean step seconds, mean preview seconds, previews) of one tiny v1 render with a preview every step."""
    from bench.gpu_kit.families import by_name
    from bench.gpu_kit.kit import derive_workflow
    from bench.gpu_kit.models import write_tiny_dit

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "empty.manifest").write_text("")
        workflows = derive_workflow(by_name("hunyuan_video"), "tiny", tmp / "workflows")
        os.environ.update({
            "HV_MODELS_DIR": str(tmp / "models"), "HV_OUTPUT_DIR": str(tmp / "outputs"), "HV_DEVICE": "cpu",
            "HV_EXTRA_CUSTOM_NODES": json.dumps([str(FIXTURE_CUSTOM_NODES)]), "HV_WORKFLOW": "hunyuan_t2v",
            "HV_WORKFLOWS_DIR": str(workflows), "HV_WEIGHTS_MODE": "off", "HV_IMAGE_TO_VIDEO": "false",
            "HV_WEIGHTS_MANIFEST": str(tmp / "empty.manifest"), "HV_PREVIEW_EVERY": "1",
        })
        from comfy_runtime.backends.contract import PreviewReady, StepProgress
        from comfy_runtime.backends.embedded import boot_comfyui
        from comfy_runtime.job.request import VideoRequest
        from comfy_runtime.service import VideoService
        from comfy_runtime.settings import Settings
        from comfy_runtime.supply.comfyui_source import resolve_comfyui_path

        service = VideoService.from_settings()
        boot_comfyui(resolve_comfyui_path(Settings()).resolve(), "cpu")
        write_tiny_dit(tmp / "models" / "diffusion_models" / by_name("hunyuan_video").dit_file("tiny"), seed=0)
        service.start()
        width, height, frames = size
        request = VideoRequest(prompt="a red fox running through fresh snow", width=width, height=height,
                               num_frames=frames, steps=steps, seed=1)
        service.render(request)  # loads the models: the measured run below only samples
        events: list = []
        service.render(request.model_copy(update={"seed": 2}), subscribers=(events.append,))  # not a cached result
        service.close()
    sampler = [e for e in events if isinstance(e, StepProgress) and e.class_type == "SamplerCustomAdvanced"]
    previews = [e for e in events if isinstance(e, PreviewReady)]
    preview_seconds = sum(p.seconds for p in previews)
    # Step k's time runs from step k-1's event to step k's, and includes the preview made after step k-1.
    step_seconds = (sampler[-1].at - sampler[0].at - sum(p.seconds for p in previews[:-1])) / (len(sampler) - 1)
    return step_seconds, preview_seconds / len(previews), len(previews)


def full_size_cost(family: str, repeats: int) -> float:
    """Median seconds of one 720p preview (latent2rgb, upscale, mp4 encode and write) on this CPU."""
    import torch

    from comfy_runtime.render.preview import UPSCALE_BY_FORMAT, encode_preview, latent_to_frames

    channels = LATENTS_720P[family][0]
    generator = torch.Generator().manual_seed(0)
    # A smooth latent (noise blurred), as a half-denoised x0 is: pure noise would cost the encoder far more.
    latent = torch.nn.functional.avg_pool3d(torch.randn(1, *LATENTS_720P[family], generator=generator), 5, 1, 2)[0]
    factors = torch.randn(channels, 3, generator=generator).mul(0.1).tolist()
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(repeats):
            started = time.perf_counter()
            frames = latent_to_frames(latent, factors, [0.0, 0.0, 0.0], UPSCALE_BY_FORMAT[family])
            encode_preview(frames, "mp4", Path(tmp) / f"p{index}.mp4")
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="64x64x9", help="WxHxF of the tiny render")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3, help="720p previews timed per family")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from comfy_runtime.render.preview import DEFAULT_EVERY

    print(machine_line())
    size = tuple(int(part) for part in args.size.split("x"))
    step, preview, count = tiny_render(size, args.steps)  # type: ignore[arg-type]
    print(f"tiny v1 {args.size} x {args.steps} steps: step {step * 1000:.1f} ms, preview {preview * 1000:.2f} ms "
          f"(n={count}); ratio preview / step {preview / step:.4f}")
    for family in LATENTS_720P:
        cost = full_size_cost(family, args.repeats)
        ratio = cost / H100_V1_720P_STEP_SECONDS
        print(f"720p x 129 {family:<15} preview {cost * 1000:.0f} ms on this CPU; ratio preview / H100 v1 step "
              f"({H100_V1_720P_STEP_SECONDS:.1f} s) {ratio:.4f}; at HV_PREVIEW_EVERY={DEFAULT_EVERY} "
              f"{ratio / DEFAULT_EVERY:.5f} of the render")


if __name__ == "__main__":
    main()
