"""Placeholder for PyAV, put on sys.path by the GPU kit only where PyAV is not installed (the lent GPU machine:
its 36 MB wheel does not fit the 64 MiB a call may carry next to ComfyUI and SciPy).

ComfyUI imports `av` (and av.container, av.subtitles.stream) at module level in comfy_api, which every
modern node uses, so without an importable `av` no sampler node loads. Nothing the kit measures calls PyAV:
the kit keeps the renderer's lossless frames and reports encoding as skipped. Any real use fails here, loudly.
"""

MESSAGE = (
    "PyAV is not installed on this machine and the GPU kit's placeholder (bench/gpu_kit/no_pyav) stands in for "
    "it: video encoding is skipped here. Install av (requirements.txt) to encode."
)


class _Missing:
    def __init__(self, *args, **kwargs):
        raise ModuleNotFoundError(MESSAGE)


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ModuleNotFoundError(f"av.{name}: {MESSAGE}")
