"""Test-only ComfyUI nodes (a custom-node pack loaded from tests/).

They stand in only where a real part cannot run on a CPU, or to inject a fault on purpose:
- HVTestSlowSteps: a node that takes a while and reports progress per step, like a sampler,
  so interrupt and progress can be tested without weights.
- HVTestFail: raises, to test how a failing node is reported.
- HVTestFailOnValue: raises only for one value of an input, to fail one job among good ones.
- HVTestSlowModel: the model as it is, each model call first sleeping a while, so a farm test can watch a real
  sampler (its steps, ETA and previews) for as long as it needs.
- HVStandInTextEncoders, HVStandInVideoVAE (model_stand_ins.py): stand-ins for HunyuanVideo's text
  encoders and VAE, for the tiny-DiT tests.
"""

import time

import comfy.utils


class HVTestSlowSteps:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE",),
                "steps": ("INT", {"default": 10, "min": 1, "max": 10000}),
                "seconds_per_step": ("FLOAT", {"default": 0.05, "min": 0.0, "max": 60.0, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "testing"

    def run(self, image, steps, seconds_per_step):
        bar = comfy.utils.ProgressBar(steps)
        for _ in range(steps):
            time.sleep(seconds_per_step)
            bar.update(1)  # the progress hook is where an interrupt lands, as in a real sampler
        return (image,)


class HVTestFail:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "message": ("STRING", {"default": "injected failure"})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "testing"

    def run(self, image, message):
        raise RuntimeError(message)


class HVTestFailOnValue:
    """Raises when `value` equals `fail_value`: bind an input (the seed) to `value`, and one request in a
    stream of good ones fails in a node, as a real node error does."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "value": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
                             "fail_value": ("INT", {"default": 666, "min": 0, "max": 0xFFFFFFFFFFFFFFFF})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "testing"

    def run(self, image, value, fail_value):
        if value == fail_value:
            raise RuntimeError(f"injected failure for value {value}")
        return (image,)


class HVTestSlowModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "seconds_per_call": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 60.0, "step": 0.01})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "run"
    CATEGORY = "testing"

    def run(self, model, seconds_per_call):
        def slowed(apply_model, args):
            time.sleep(seconds_per_call)
            return apply_model(args["input"], args["timestep"], **args["c"])

        patched = model.clone()
        patched.set_model_unet_function_wrapper(slowed)
        return (patched,)


NODE_CLASS_MAPPINGS = {"HVTestSlowSteps": HVTestSlowSteps, "HVTestFail": HVTestFail,
                       "HVTestFailOnValue": HVTestFailOnValue, "HVTestSlowModel": HVTestSlowModel}

# Stand-ins for HunyuanVideo's text encoders and VAE (cannot run on CPU); see model_stand_ins.py.
from .model_stand_ins import NODE_CLASS_MAPPINGS as _MODEL_STAND_INS  # noqa: E402

NODE_CLASS_MAPPINGS.update(_MODEL_STAND_INS)

# Fault injection (out of memory, cache tracking); see faults.py.
from .faults import NODE_CLASS_MAPPINGS as _FAULTS  # noqa: E402

NODE_CLASS_MAPPINGS.update(_FAULTS)
