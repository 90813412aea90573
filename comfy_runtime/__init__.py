"""HunyuanVideo on ComfyUI, run in-process: the package behind predict.py."""

from __future__ import annotations

__version__ = "0.1.0"  # pyproject.toml reads it from here

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from comfy_runtime.job.request import VideoRequest
    from comfy_runtime.render.rendered import Rendered
    from comfy_runtime.render.served_model import ServedModel
    from comfy_runtime.service import VideoService

__all__ = ["Rendered", "ServedModel", "VideoRequest", "VideoService", "__version__"]
# Resolved on first use, so importing one subpackage (settings, the planner) does not pull in every edge the
# service has: PyAV for encoding, the ComfyUI backend.
_HOMES = {"VideoRequest": "comfy_runtime.job.request", "Rendered": "comfy_runtime.render.rendered",
          "ServedModel": "comfy_runtime.render.served_model", "VideoService": "comfy_runtime.service"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'comfy_runtime' has no attribute {name!r}")
