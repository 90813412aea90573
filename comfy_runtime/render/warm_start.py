"""Warm start: in setup, one minimal job through the workflow's real loaders, before the server says READY.

ComfyUI keeps a node's output while its inputs stay the same (the executor's output cache) and keeps loaded
models on the device, so after this job the DiT, the text encoders and the VAE are resident and the first
prediction's loaders are taken from the cache: it loads nothing. The job is the smallest the rules allow
(64x64, 1 frame, 1 step); its video is discarded. VideoService.start() runs it (HV_WARM_START), so every front
door that starts a service (Cog, the farm's worker, the CLI) gets it.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)
WARM_START_REQUEST = {"prompt": "warm start", "width": 64, "height": 64, "num_frames": 1, "steps": 1, "seed": 0}


def log_warm_start(seconds: float) -> None:
    """The part of setup a cold first prediction would otherwise pay."""
    log.warning("warm start: models loaded by one %dx%d, %d-frame, %d-step job in %.2f s (HV_WARM_START)",
                64, 64, 1, 1, seconds)
    print(f"warm start: weights loaded in {seconds:.2f} s; the first prediction loads nothing", flush=True)
