"""Render the tiny step-distilled (meanflow) 1.5 DiT with one ComfyUI tree, in a process of its own, recording `vec`.

ComfyUI boots once per process, so the patched and the pristine tree each get one:
    python -m tests.support.meanflow_probe OUT.npz        (HV_COMFYUI_PATH and the HV_* variables from the caller)
It boots predict.py's Predictor, renders REQUEST twice (same seed), and saves the frames and, for every DiT call,
the three time embeddings the meanflow rule combines, read straight off ComfyUI's modules (calls go through):
  vec_t  what time_in returned        vec_r  what time_r_in returned        vec  what double block 0 received
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tests.support.media import decode_frames, png_data_uri

WORKFLOW = "hunyuan15_480p_i2v_step_distilled"
# steps left out: the model's default (8) applies; guidance and negative_prompt are refused on this model.
REQUEST = dict(prompt="a red fox running through fresh snow", width=64, height=64, num_frames=5, fps=24, seed=1234)


def request() -> dict:
    return {**REQUEST, "image": png_data_uri(1)}


def _record_time_embeddings(calls: list[dict[str, np.ndarray]]) -> None:
    from comfy.ldm.hunyuan_video.model import HunyuanVideo

    original = HunyuanVideo.forward_orig

    def recording(self, *args, **kwargs):
        seen: dict[str, np.ndarray] = {}

        def keep(name):
            def hook(_module, _inputs, output) -> None:  # None: the module's output goes on unchanged
                if name not in seen:
                    seen[name] = output.detach().float().numpy().copy()
            return hook

        def keep_vec(_module, _args, block_kwargs) -> None:
            if "vec" not in seen:
                seen["vec"] = block_kwargs["vec"].detach().float().numpy().copy()

        hooks = [self.time_in.register_forward_hook(keep("vec_t")),
                 self.double_blocks[0].register_forward_pre_hook(keep_vec, with_kwargs=True)]
        if self.time_r_in is not None:
            hooks.append(self.time_r_in.register_forward_hook(keep("vec_r")))
        try:
            return original(self, *args, **kwargs)
        finally:
            for hook in hooks:
                hook.remove()
            calls.append(seen)

    HunyuanVideo.forward_orig = recording


def main(out: Path) -> None:
    from tests.support.predictor import booted_predictor

    predictor = booted_predictor({})
    calls: list[dict[str, np.ndarray]] = []
    _record_time_embeddings(calls)
    renders = [np.stack(decode_frames(predictor.predict(**request()))) for _ in range(2)]
    predictor.service.close()
    assert calls and all({"vec_t", "vec_r", "vec"} <= set(call) for call in calls), [sorted(c) for c in calls]
    np.savez(out, frames_a=renders[0], frames_b=renders[1], calls=len(calls),
             **{f"{name}_{i}": call[name] for i, call in enumerate(calls) for name in ("vec_t", "vec_r", "vec")})


if __name__ == "__main__":
    main(Path(sys.argv[1]))
