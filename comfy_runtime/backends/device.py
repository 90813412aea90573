"""HV_DEVICE=cuda: a GPU image that cannot use its GPU fails setup at once, naming why, instead of rendering on
the CPU until the time limit."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from comfy_runtime.errors import HunyuanVideoError

# The oldest Linux driver each CUDA major version runs on (NVIDIA's CUDA toolkit release notes, "minor version
# compatibility": 13.x needs >= 580, 12.x >= 525). torch's pip wheels carry their own CUDA runtime, so the
# driver is the one thing the host must bring.
DRIVER_FLOOR = {"13": "580", "12": "525", "11": "450"}


class DeviceError(HunyuanVideoError, RuntimeError):
    pass


def require_cuda() -> None:
    """Return when torch can use a CUDA device; otherwise raise DeviceError with the cause and the fix."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import torch

        if torch.cuda.is_available():
            return
    # torch reports a driver it cannot use as a warning from is_available(), not as an error.
    said = [str(w.message).strip() for w in caught if "cuda" in str(w.message).lower()]
    raise DeviceError(
        f"HV_DEVICE=cuda, but torch cannot use a GPU: {cuda_unavailable_cause(torch, said)}. Nothing was rendered. "
        "Run the image on a GPU host with the NVIDIA container runtime (docker run --gpus all; on Kubernetes a "
        "nvidia.com/gpu limit), or set HV_DEVICE=cpu to render on the CPU on purpose (very slow)."
    )


def cuda_unavailable_cause(torch, warned: list[str] | None = None) -> str:
    built_for = torch.version.cuda
    if built_for is None:
        return f"this torch ({torch.__version__}) is a CPU-only build; install the CUDA build requirements.txt pins"
    floor = DRIVER_FLOOR.get(built_for.split(".")[0], "")
    needs = f"torch {torch.__version__} is built for CUDA {built_for}" + (f" (NVIDIA driver >= {floor})" if floor else "")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in {"", "-1", "none", "NoDevFiles"}:
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU from this process; {needs}"
    reasons = list(warned or [])
    try:
        torch.cuda.init()
    except Exception as error:  # torch raises RuntimeError or its own AcceleratorError with the driver's words
        reasons.append(str(error).strip())
    if not Path("/dev/nvidiactl").exists():
        reasons.append("no /dev/nvidiactl: the container was started without the NVIDIA runtime or the host has no GPU")
    if not reasons:
        reasons.append(f"torch sees {torch.cuda.device_count()} CUDA device(s)")
    return f"{'; '.join(dict.fromkeys(reasons))}; {needs}"
