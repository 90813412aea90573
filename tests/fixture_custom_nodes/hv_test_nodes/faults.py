"""Fault injection (test-only nodes).

- HVTestTrackedImage passes its image on as a fresh tensor and keeps only a weak reference to it, so
  a test can see whether ComfyUI's output cache still holds a run's intermediate results.
- HVTestOutOfMemory / HVTestOutOfMemoryDecode stand in for a GPU allocation failing in the sampler or
  in the VAE decode (there is no GPU here): each loads a small model through ComfyUI's model manager,
  as a sampler does, then raises the exception CUDA raises, torch.cuda.OutOfMemoryError.
"""

from __future__ import annotations

import weakref

import comfy.model_management
import comfy.model_patcher
import torch

TRACKED: list[weakref.ref] = []
LOADED_BEFORE_OOM: list[int] = []  # how many models ComfyUI had loaded when each OOM was raised


class HVTestTrackedImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "testing"

    def run(self, image):
        out = image.clone()
        TRACKED.append(weakref.ref(out))
        return (out,)


class HVTestOutOfMemory:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "megabytes": ("INT", {"default": 8, "min": 1, "max": 1024})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "testing"

    def run(self, image, megabytes):
        device = comfy.model_management.get_torch_device()
        model = torch.nn.Linear(1024, megabytes * 256)  # megabytes MiB of float32 weights
        patcher = comfy.model_patcher.ModelPatcher(
            model, load_device=device, offload_device=comfy.model_management.unet_offload_device()
        )
        comfy.model_management.load_models_gpu([patcher])
        LOADED_BEFORE_OOM.append(len(comfy.model_management.current_loaded_models))
        raise torch.cuda.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79.19 GiB "
            "(injected by HVTestOutOfMemory)"
        )


class HVTestOutOfMemoryDecode(HVTestOutOfMemory):
    pass


NODE_CLASS_MAPPINGS = {
    "HVTestTrackedImage": HVTestTrackedImage,
    "HVTestOutOfMemory": HVTestOutOfMemory,
    "HVTestOutOfMemoryDecode": HVTestOutOfMemoryDecode,
}
