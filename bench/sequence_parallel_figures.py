"""On paper: one sampling step of HV_GPUS=N (Ulysses, backends/parallel) at 720p, bytes moved against FLOPs.

Derived from the architectures (bench/gpu_kit: the DiT's own weight shapes, flops.py), not measured. Per joint
attention layer each rank swaps q, k and v in (3 all-to-alls) and the output back (1), each (image tokens / N) x
hidden in bf16, of which (N-1)/N leaves the rank; the text heads are gathered once more (small), and the image is
gathered once per forward after the last block. Compute splits N ways except the text stream, which every rank
runs whole (a few hundred tokens). The link time is bytes sent / one direction's bandwidth, as if not overlapped
with compute (it is not, in this implementation), at 60% MFU for the compute: an estimate of the speedup, beside
xDiT's measured one for v1 (1280x720x129, 50 steps, H100, Ulysses; published).

    python bench/sequence_parallel_figures.py [--mfu 0.6]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gpu_kit.families import V1_FULL, V15_FULL  # noqa: E402
from bench.gpu_kit.flops import PEAK_BF16_DENSE, Tokens, forward_flops, image_tokens  # noqa: E402

# One direction's bandwidth per GPU, bytes/s: NVLink 4 (H100 SXM, 900 GB/s both ways); PCIe Gen5 x16 (64 GB/s).
LINKS = {"NVLink 450 GB/s": 450e9, "PCIe5 64 GB/s": 64e9}
XDIT_V1_SECONDS = {1: 1904, 2: 925, 4: 514, 8: 338}  # 50 steps, so per step: /50
BF16 = 2
TEXT_TOKENS = 256


def _shapes(config: dict) -> dict[str, tuple[int, ...]]:
    from bench.gpu_kit.models import dit_shapes, import_comfy
    from comfy_runtime.settings import Settings
    from comfy_runtime.supply.comfyui_source import resolve_comfyui_path

    import_comfy(resolve_comfyui_path(Settings()), "cpu")
    return dit_shapes(config)


def rows(mfu: float) -> list[tuple[str, int, float, float, dict[str, float]]]:
    cases = [
        ("HunyuanVideo v1 13B, 1280x720x129", V1_FULL, (33, 90, 160), 1),  # 8x VAE: 720/8 x 1280/8, (129-1)/4+1
        ("HunyuanVideo 1.5 8.3B, 1280x720x121 (CFG: 2 passes)", V15_FULL, (31, 45, 80), 2),  # 16x VAE
    ]
    out = []
    peak = PEAK_BF16_DENSE["H100"]
    for label, config, latent, passes in cases:
        shapes = _shapes(config)
        image = image_tokens(latent, config["patch_size"])
        tokens = Tokens(image=image, llm_text=TEXT_TOKENS)
        flops = forward_flops(shapes, config["hidden_size"], tokens) * passes
        layers = config["depth"] + config["depth_single_blocks"]
        hidden = config["hidden_size"]
        one_gpu = flops / (peak * mfu)
        for n in (2, 4, 8):
            leaves = (n - 1) / n
            per_layer = 4 * (image / n) * hidden * BF16 * leaves + TEXT_TOKENS * hidden * BF16 * leaves
            sent = (layers * per_layer + image * hidden * BF16 * leaves) * passes
            compute = one_gpu / n
            speedups = {link: one_gpu / (compute + sent / bandwidth) for link, bandwidth in LINKS.items()}
            out.append((label, n, flops / n, sent, speedups))
        out.append((label, 1, flops, 0.0, {link: 1.0 for link in LINKS}))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mfu", type=float, default=0.6, help="the compute's share of the bf16 peak (default 0.6)")
    args = parser.parse_args()
    print(f"per sampling step, H100 bf16 peak {PEAK_BF16_DENSE['H100'] / 1e12:.0f} TFLOP/s at {args.mfu:.0%} MFU; "
          "sent = bytes each rank sends in all-to-alls and gathers")
    print(f"{'model, size':<54} {'GPUs':>4} {'TFLOP/rank':>10} {'GB sent/rank':>12} "
          + " ".join(f"{'speedup ' + link:>24}" for link in LINKS) + f" {'xDiT measured (v1)':>19}")
    for label, n, flops, sent, speedups in sorted(rows(args.mfu), key=lambda row: (row[0], row[1])):
        measured = f"{XDIT_V1_SECONDS[1] / XDIT_V1_SECONDS[n]:.2f}x" if label.startswith("HunyuanVideo v1") else "-"
        print(f"{label:<54} {n:>4} {flops / 1e12:>10.1f} {sent / 1e9:>12.2f} "
              + " ".join(f"{speedups[link]:>23.2f}x" for link in LINKS) + f" {measured:>19}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
