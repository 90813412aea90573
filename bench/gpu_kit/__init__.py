"""GPU figures without downloads: the real HunyuanVideo architectures with seeded random weights, measured
through the product's own renderer. `python -m bench.gpu_kit --scale tiny|full`; see docs/gpu-kit.md."""
