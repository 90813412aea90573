"""HunyuanVideo on ComfyUI, run in-process: the package behind predict.py."""

from __future__ import annotations

__version__ = "0.1.0"  # pyproject.toml reads it from here

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from comfy_runtime.job.request import VideoRequest
    from comfy_runtime.render.renderer import Rendered, VideoRenderer
    from comfy_runtime.service import VideoService

__all__ = ["Rendered", "VideoRenderer", "VideoRequest", "VideoService", "__version__"]
# Resolved on first use, so importing one subpackage (settings, the renderer) does not pull in every edge the
# service has: boto3 for delivery, PyAV for encoding. The GPU kit runs the renderer where neither is installed.
_HOMES = {"VideoRequest": "comfy_runtime.job.request", "Rendered": "comfy_runtime.render.renderer",
          "VideoRenderer": "comfy_runtime.render.renderer", "VideoService": "comfy_runtime.service"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'comfy_runtime' has no attribute {name!r}")
