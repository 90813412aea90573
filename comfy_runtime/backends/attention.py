"""HV_ATTENTION: the attention kernel ComfyUI runs, set through ComfyUI's own switches (comfy/cli_args.py).

ComfyUI picks its attention function once, when comfy/ldm/modules/attention.py is imported, from its arguments:
so the switch is set on `comfy.cli_args.args` before that import (embedded.boot_comfyui), as the command-line flag
would. At 720p x 121 frames a 1.5 forward attends over ~110k tokens: attention is most of a step.

- sdpa (default): torch's scaled_dot_product_attention (`--use-pytorch-cross-attention`, ComfyUI's own choice on
  CUDA anyway). Runs everywhere.
- sage: SageAttention 1 (`--use-sage-attention`), Triton kernels with 8-bit Q.K. GPU only: on a CPU ComfyUI would
  log an error per call and fall back to torch, so it is refused there. Pinned: sageattention==1.0.6 (a pure-Python
  Triton wheel; SageAttention 2 needs a CUDA build and is not on the index as a wheel).
- Not offered: flash-attn-4 (CuTe, Hopper/Blackwell) ships only `flash_attn.cute`, while ComfyUI 0.3.75's
  `--use-flash-attention` imports flash-attn 2's `flash_attn.flash_attn_func`, which flash-attn-4 does not provide;
  flash-attn 2 itself is a CUDA source build (nothing to install from the index here).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from comfy_runtime.errors import HunyuanVideoError

AttentionName = Literal["sdpa", "sage"]


class AttentionRefused(HunyuanVideoError, ValueError):
    """An HV_ATTENTION this machine or backend cannot run."""


@dataclass(frozen=True)
class AttentionKernel:
    name: str
    switch: str  # the comfy.cli_args.args attribute (the command-line flag, spelled as argparse stores it)
    flag: str
    package: str | None = None  # import name it needs
    requirement: str | None = None  # the pin the image installs (cog.yaml)
    gpu_only: bool = False


KERNELS: dict[str, AttentionKernel] = {
    "sdpa": AttentionKernel("sdpa", "use_pytorch_cross_attention", "--use-pytorch-cross-attention"),
    "sage": AttentionKernel("sage", "use_sage_attention", "--use-sage-attention", package="sageattention",
                            requirement="sageattention==1.0.6", gpu_only=True),
}


def check_attention(name: str, on_gpu: bool, installed: Callable[[str], bool] | None = None) -> AttentionKernel:
    """The kernel, or AttentionRefused naming the fix (before anything is fetched or booted)."""
    installed = installed or (lambda package: importlib.util.find_spec(package) is not None)
    kernel = KERNELS.get(name)
    if kernel is None:
        raise AttentionRefused(f"HV_ATTENTION={name!r} is not one of {', '.join(KERNELS)}: use one of them (docs/lora-and-speed.md)")
    if kernel.gpu_only and not on_gpu:
        raise AttentionRefused(
            f"HV_ATTENTION={name} needs a CUDA GPU ({kernel.package}'s kernels do not run on a CPU, where ComfyUI would "
            "fall back to torch on every call): unset HV_ATTENTION (sdpa), or run on a GPU"
        )
    if kernel.package and not installed(kernel.package):
        raise AttentionRefused(
            f"HV_ATTENTION={name} needs the {kernel.package} package, which is not installed: pip install "
            f"'{kernel.requirement}' (the image installs it), or unset HV_ATTENTION (sdpa)"
        )
    return kernel


def apply_attention(args: Any, name: str) -> None:
    """Set ComfyUI's own switch for the kernel on its parsed arguments (before its attention module is imported).
    sdpa sets none: it is ComfyUI's own choice on CUDA, so the default boot stays exactly ComfyUI's."""
    if name != "sdpa":
        setattr(args, KERNELS[name].switch, True)


def refuse_on_remote(name: str) -> None:
    if name != "sdpa":
        raise AttentionRefused(
            f"HV_ATTENTION={name} selects the kernel of this process's ComfyUI, and HV_BACKEND=remote runs none: start "
            f"the remote ComfyUI with {KERNELS[name].flag}, and unset HV_ATTENTION here"
        )
