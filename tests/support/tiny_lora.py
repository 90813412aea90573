"""Tiny LoRAs for the tiny v1 DiT (tests/support/tiny_hunyuan.py), one per key format people publish, and the hostile
files the LoRA fetcher must refuse.

The six layers are real layers of the tiny DiT. How each format names them decides how many ComfyUI 0.3.75
applies (comfy/lora.py model_lora_keys_unet): ComfyUI, diffusion-pipe and kohya names all six; musubi-tuner's
kohya-style names only the three whose module names match ComfyUI's (qkv, proj, linear1); diffusers and bare
names none.
"""

from __future__ import annotations

import json
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

# ComfyUI's module name -> (out, in) of the tiny DiT's weight.
LAYERS: dict[str, tuple[int, int]] = {
    "double_blocks.0.img_attn.qkv": (384, 128),
    "double_blocks.0.img_attn.proj": (128, 128),
    "double_blocks.0.img_mlp.0": (512, 128),
    "double_blocks.0.img_mlp.2": (128, 512),
    "double_blocks.0.img_mod.lin": (768, 128),
    "single_blocks.0.linear1": (896, 128),
}
# HunyuanVideo's reference module names (diffusion-pipe, musubi-tuner) where they differ from ComfyUI's.
_REFERENCE_NAMES = {"img_mlp.0": "img_mlp.fc1", "img_mlp.2": "img_mlp.fc2", "img_mod.lin": "img_mod.linear",
                    "img_attn.qkv": "img_attn_qkv", "img_attn.proj": "img_attn_proj"}
_DIFFUSERS_NAMES = {
    "double_blocks.0.img_attn.qkv": "transformer_blocks.0.attn.to_q",
    "double_blocks.0.img_attn.proj": "transformer_blocks.0.attn.to_out.0",
    "double_blocks.0.img_mlp.0": "transformer_blocks.0.ff.net.0.proj",
    "double_blocks.0.img_mlp.2": "transformer_blocks.0.ff.net.2",
    "double_blocks.0.img_mod.lin": "transformer_blocks.0.norm1.linear",
    "single_blocks.0.linear1": "single_transformer_blocks.0.proj_mlp",
}


def _reference(name: str, joiner: str = ".") -> str:
    for comfy, reference in _REFERENCE_NAMES.items():
        name = name.replace(comfy, reference)
    return name


def _musubi(name: str) -> str:
    # musubi-tuner: kohya-style names of the reference modules; img_attn_qkv stays one token, as in its model
    block, _, module = name.partition(".0.")
    module = {"img_mlp.0": "img_mlp_fc1", "img_mlp.2": "img_mlp_fc2", "img_mod.lin": "img_mod_linear"}.get(module, module)
    return f"lora_unet_{block}_0_{module.replace('.', '_')}"


# format -> (layer name -> key prefix, down suffix, up suffix)
FORMATS: dict[str, tuple[Callable[[str], str], str, str]] = {
    "comfyui": (lambda n: f"diffusion_model.{n}", "lora_A.weight", "lora_B.weight"),
    "diffusion_pipe": (lambda n: f"transformer.{_reference(n)}", "lora_A.weight", "lora_B.weight"),
    "kohya": (lambda n: "lora_unet_" + n.replace(".", "_"), "lora_down.weight", "lora_up.weight"),
    "musubi": (_musubi, "lora_down.weight", "lora_up.weight"),
    "diffusers": (lambda n: f"transformer.{_DIFFUSERS_NAMES[n]}", "lora_A.weight", "lora_B.weight"),
    "bare": (lambda n: n, "lora_A.weight", "lora_B.weight"),
}
APPLIED_LAYERS = {"comfyui": 6, "diffusion_pipe": 6, "kohya": 6, "musubi": 3, "diffusers": 0, "bare": 0}


def lora_tensors(naming: str, rank: int = 4, seed: int = 0, scale: float = 1.0) -> dict:
    import torch

    prefix_of, down, up = FORMATS[naming]
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, (out_dim, in_dim) in LAYERS.items():
        prefix = prefix_of(name)
        tensors[f"{prefix}.{down}"] = torch.randn(rank, in_dim, generator=generator) / in_dim**0.5
        tensors[f"{prefix}.{up}"] = scale * torch.randn(out_dim, rank, generator=generator) / rank**0.5
        if down == "lora_down.weight":
            tensors[f"{prefix}.alpha"] = torch.tensor(float(rank))
    return tensors


def write_tiny_lora(path: Path, naming: str, seed: int = 0, scale: float = 1.0) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(lora_tensors(naming, seed=seed, scale=scale), str(path))
    return path


def tiny_lora_bytes(naming: str, seed: int = 0, scale: float = 1.0) -> bytes:
    from safetensors.torch import save

    return save(lora_tensors(naming, seed=seed, scale=scale))


def pickle_bytes() -> bytes:
    """What a .ckpt is: a pickle. This one would call os.system if unpickled (it never is)."""

    class Exploit:
        def __reduce__(self):
            import os

            return os.system, ("echo pwned",)

    return pickle.dumps(Exploit(), protocol=4)


def torch_zip_bytes(tmp: Path) -> bytes:
    """torch.save's default format: a zip archive holding a pickle."""
    import torch

    torch.save({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, tmp)
    return tmp.read_bytes()


def header_claiming(tensor_bytes: int) -> bytes:
    """A safetensors header claiming one F32 tensor of tensor_bytes, followed by 16 bytes of data."""
    count = tensor_bytes // 4
    header = json.dumps({"diffusion_model.x.lora_A.weight": {"dtype": "F32", "shape": [count], "data_offsets": [0, count * 4]}})
    raw = header.encode()
    return struct.pack("<Q", len(raw)) + raw + b"\0" * 16
