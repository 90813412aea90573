"""Emulates the lent GPU machine's Python environment in a subprocess (put this folder first on PYTHONPATH).

That machine has the packages bench/gpu_kit/payload.py lists as LENT_MACHINE_MODULES, plus what the kit's
payload brings (PAYLOAD_MODULES); this venv has far more. tests/support/lent_machine_site.py builds a folder
of links to only those packages (and their metadata); this swaps the venv's site-packages on sys.path for it,
so everything else (PyAV, Cog, boto3, kornia ...) is as absent as it is there: find_spec says None,
importlib.metadata does not list it, and an import fails. Python runs this at start-up (site.py), in every
process that inherits PYTHONPATH, the kit's measuring child included.
"""

import os
import site
import sys

_FARM = os.environ.get("GPUKIT_LENT_SITE")
if _FARM:
    _real = {os.path.realpath(p) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    sys.path[:] = [p for p in sys.path if os.path.realpath(p) not in _real] + [_FARM]
