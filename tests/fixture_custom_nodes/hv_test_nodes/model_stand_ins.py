"""The model stand-ins live with the GPU kit (bench/gpu_kit/stand_ins.py), which renders with them too.

Loaded by file path: ComfyUI imports this pack without the repository root on sys.path in every process.
"""

import importlib.util
from pathlib import Path

_SOURCE = Path(__file__).resolve().parents[3] / "bench" / "gpu_kit" / "stand_ins.py"
_spec = importlib.util.spec_from_file_location("hv_test_nodes_model_stand_ins", _SOURCE)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

# Everything the module defines, so a stand-in added there is here too.
globals().update({name: value for name, value in vars(_module).items() if not name.startswith("__")})
