"""HunyuanVideo on ComfyUI, run in-process: the package behind predict.py."""

__version__ = "0.1.0"  # pyproject.toml reads it from here

from comfy_runtime.job.request import VideoRequest
from comfy_runtime.render.renderer import Rendered, VideoRenderer
from comfy_runtime.service import VideoService

__all__ = ["Rendered", "VideoRenderer", "VideoRequest", "VideoService", "__version__"]
