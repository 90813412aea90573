"""Full-size (and tiny) HunyuanVideo DiTs and VAEs with seeded random weights, written as safetensors.

Compute cost does not depend on the weights' values, so the real architectures with random weights cost
what the real models cost per step, per decode and per load. The weights are drawn the way the tiny test
DiT always drew them: >=2-D tensors ~ N(0, 1) / sqrt(fan_in) (activations stay near unit scale, so nothing
overflows in bf16), norm scales 1 + 0.1 N(0, 1), biases 0.1 N(0, 1).

A 13B DiT is 25.6 GB in bf16: it is never held in memory whole. The model is built on the meta device
(shapes only), and `write_streamed` writes the safetensors file tensor by tensor (header first, since the
format puts every offset in the header), hashing the bytes as they go so the product's boot check gets a
pinned sha256 without a second pass over the file. safetensors' own save_file needs every tensor in memory
at once, which is the 2x RAM this avoids.

ComfyUI must be importable (comfy_runtime.backends.embedded boots it; `import_comfy` does the same here).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The tiny v1 DiT the CPU tests render with (tests/support/tiny_hunyuan.py re-exports these): the real ComfyUI class at
# hidden 128, one double and one single block. Its arguments as ComfyUI's detection reads them back.
TINY_CONTEXT_DIM = 32
TINY_DIT_CONFIG: dict[str, Any] = dict(
    image_model="hunyuan_video", hidden_size=128, num_heads=1, depth=1, depth_single_blocks=1,
    axes_dim=[16, 56, 56], patch_size=[1, 2, 2], in_channels=16, out_channels=16, context_in_dim=TINY_CONTEXT_DIM,
    vec_in_dim=768,  # vector_in present: without it ComfyUI takes the file for HunyuanImage 2.1
    guidance_embed=True, qkv_bias=True, theta=256, mlp_ratio=4.0, byt5=False, meanflow=False,
    use_cond_type_embedding=False, vision_in_dim=None,
)

SAFETENSORS_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
WRITE_CHUNK = 64 << 20  # a large tensor goes to disk (and the hash) in slices, never as one 100+ MB bytes copy


def import_comfy(comfyui_path: Path, device: str = "auto") -> None:
    """Import ComfyUI the way the product boots it (same path rules, same args), without loading any nodes."""
    from comfy_runtime.backends.embedded import boot_comfyui

    boot_comfyui(Path(comfyui_path).resolve(), device)  # type: ignore[arg-type]


def build_dit_on_meta(config: dict[str, Any]):
    """ComfyUI's own HunyuanVideo class (both v1 and 1.5) with this config, shapes only: no memory."""
    import comfy.ops
    import torch
    from comfy.ldm.hunyuan_video.model import HunyuanVideo

    with torch.device("meta"):
        return HunyuanVideo(operations=comfy.ops.disable_weight_init, device="meta", **config_for_tree(config))


def config_for_tree(config: dict[str, Any]) -> dict[str, Any]:
    """`config` as the loaded ComfyUI's HunyuanVideoParams takes it: the meanflow patch (patches/comfyui/0001) adds a
    required `meanflow_sum`, which detection sets when vision_in is present (the 1.5 family). It changes no shape, so a
    config written for either tree builds the same file on both."""
    import dataclasses

    from comfy.ldm.hunyuan_video.model import HunyuanVideoParams

    fields = {field.name for field in dataclasses.fields(HunyuanVideoParams)}
    config = dict(config)
    if "meanflow_sum" in fields:
        config.setdefault("meanflow_sum", config.get("vision_in_dim") is not None)
    else:
        config.pop("meanflow_sum", None)
    return config


def dit_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in build_dit_on_meta(config).state_dict().items()}


def vae_shapes(detection_keys: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The VAE ComfyUI builds for these detection keys (its architecture is fixed by them), as name -> shape.
    Built on CPU in float32 once (a few hundred million parameters), then dropped."""
    import logging

    import comfy.sd
    import torch

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # it lists every key it did not get: all but the detection ones
    try:
        vae = comfy.sd.VAE(sd={name: torch.zeros(shape) for name, shape in detection_keys.items()})
    finally:
        logging.getLogger().setLevel(quiet)
    shapes = {name: tuple(t.shape) for name, t in vae.first_stage_model.state_dict().items()}
    del vae
    return shapes


def detected_dit(shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, Any], str]:
    """What ComfyUI's model detection makes of these weight shapes: its unet config and its model class name."""
    import comfy.model_detection
    import torch

    state_dict = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    unet_config = comfy.model_detection.detect_unet_config(state_dict, "")
    if unet_config is None:
        return {}, "not detected"
    model_config = comfy.model_detection.model_config_from_unet_config(unet_config, state_dict)
    return unet_config, type(model_config).__name__ if model_config is not None else "no supported model"


def check_detection(config: dict[str, Any], shapes: dict[str, tuple[int, ...]], expected_class: str) -> dict[str, Any]:
    """Read the config back from ComfyUI's detection; raise if the file would load as another model or config."""
    detected, model_class = detected_dit(shapes)
    differs = {key: (value, detected.get(key)) for key, value in config.items() if detected.get(key) != value}
    if model_class != expected_class or differs:
        raise ValueError(
            f"ComfyUI detects these weights as {model_class} (expected {expected_class}); config keys that differ "
            f"(ours, detected): {differs}. Fix the DiT config in bench/gpu_kit/families.py."
        )
    return detected


def parameter_count(shapes: dict[str, tuple[int, ...]]) -> int:
    total = 0
    for shape in shapes.values():
        count = 1
        for size in shape:
            count *= size
        total += count
    return total


def random_tensor(name: str, shape: tuple[int, ...], generator, device) -> Any:
    """One weight, drawn by the rule in the module doc (float32; the caller casts)."""
    import torch

    if len(shape) >= 2:
        fan_in = 1
        for size in shape[1:]:
            fan_in *= size
        return torch.randn(shape, generator=generator, device=device) / fan_in**0.5
    base = 1.0 if name.endswith(".weight") else 0.0  # norm scales near 1, biases near 0
    return base + 0.1 * torch.randn(shape, generator=generator, device=device)


@dataclass(frozen=True)
class Written:
    path: Path
    size: int
    sha256: str
    parameters: int
    seconds: float


def write_streamed(
    path: Path,
    shapes: dict[str, tuple[int, ...]],
    dtype: str = "bfloat16",
    seed: int = 0,
    device: str = "cpu",
    on_progress: Callable[[int, int], None] | None = None,
) -> Written:
    """Write seeded random weights for `shapes` as a safetensors file, one tensor in memory at a time.

    One generator draws every tensor in order (the order of `shapes`), so a seed gives the same file on a
    device. device="cuda" draws on the GPU (a 13B model in seconds instead of minutes of CPU randn)."""
    import time

    import torch

    started = time.perf_counter()
    torch_dtype = getattr(torch, dtype)
    element = torch.empty((), dtype=torch_dtype).element_size()
    header: dict[str, Any] = {"__metadata__": {"format": "pt", "generator": "bench/gpu_kit random weights", "seed": str(seed)}}
    offset = 0
    for name, shape in shapes.items():
        count = 1
        for size in shape:
            count *= size
        header[name] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + count * element]}
        offset += count * element
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    digest = hashlib.sha256()
    generator = torch.Generator(device=device).manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    written = 0
    with partial.open("wb") as handle:
        for chunk in (struct.pack("<Q", len(header_bytes)), header_bytes):
            handle.write(chunk)
            digest.update(chunk)
        for name, shape in shapes.items():
            tensor = random_tensor(name, shape, generator, device).to(torch_dtype).contiguous().cpu()
            data = tensor.view(-1).view(torch.uint8).numpy()
            for start in range(0, len(data), WRITE_CHUNK):
                view = memoryview(data[start : start + WRITE_CHUNK])
                handle.write(view)
                digest.update(view)
            written += len(data)
            del tensor, data
            if on_progress is not None:
                on_progress(written, offset)
        handle.flush()
        import os

        os.fsync(handle.fileno())  # on disk, not in dirty pages: the cold-read figures depend on it
    partial.replace(path)
    return Written(path, path.stat().st_size, digest.hexdigest(), parameter_count(shapes), time.perf_counter() - started)


def write_dit(path: Path, config: dict[str, Any], seed: int = 0, dtype: str = "float32") -> Path:
    """A HunyuanVideo-family DiT (ComfyUI's own class) of `config` with seeded random weights, as safetensors:
    the tiny test DiTs and, with a full-size config, the kit's. ComfyUI must be importable (booted)."""
    write_streamed(Path(path), dit_shapes(config), dtype=dtype, seed=seed)
    return Path(path)


def write_tiny_dit(path: Path, seed: int = 0) -> Path:
    """Seeded random weights for the tiny test DiT (float32). ComfyUI must be importable (booted)."""
    return write_dit(path, TINY_DIT_CONFIG, seed)


def write_random_weights(model: Any, path: Path, seed: int = 0, dtype: str = "float32") -> Path:
    """Seeded random weights for every tensor of `model` (any torch module: a latent upsampler, a VAE)."""
    state = model.state_dict()
    odd = [name for name, tensor in state.items() if not tensor.is_floating_point()]
    if odd:
        raise ValueError(f"write_random_weights draws floating-point weights only; {odd} are not")
    write_streamed(Path(path), {name: tuple(tensor.shape) for name, tensor in state.items()}, dtype=dtype, seed=seed)
    return Path(path)


def drop_from_page_cache(path: Path) -> bool:
    """Ask the kernel to forget the file's cached pages, so the next read comes from the disk. Works without
    root for clean pages (the file was fsynced); False where the platform has no posix_fadvise."""
    import os

    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def sequential_read_seconds(path: Path, block: int = 16 << 20) -> float:
    """Time one plain sequential read of the whole file (no parsing): the physical limit for a weight load."""
    import time

    buffer = bytearray(block)
    view = memoryview(buffer)
    started = time.perf_counter()
    with Path(path).open("rb", buffering=0) as handle:
        while handle.readinto(view):
            pass
    return time.perf_counter() - started


def names_in(shapes: Iterable[str], prefix: str) -> list[str]:
    return [name for name in shapes if name.startswith(prefix)]
