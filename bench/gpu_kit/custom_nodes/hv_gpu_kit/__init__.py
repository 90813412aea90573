"""The GPU kit's ComfyUI nodes: the model stand-ins of bench/gpu_kit/stand_ins.py.

Loaded by file path: ComfyUI imports a custom-node pack without this repository on sys.path.
"""

import importlib.util
from pathlib import Path

_SOURCE = Path(__file__).resolve().parents[2] / "stand_ins.py"
_spec = importlib.util.spec_from_file_location("hv_gpu_kit_stand_ins", _SOURCE)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

NODE_CLASS_MAPPINGS = _module.NODE_CLASS_MAPPINGS
