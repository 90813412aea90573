"""Copies of the provisioned ComfyUI with and without the lock's pinned patches.

The provisioned tree (.cache/comfyui-<version>) is shared by every checkout on a machine, and may be patched or not
depending on when it was last provisioned: tests never patch it in place. They copy it (or only the files the
patches touch) into a temp folder and bring the copy to the state they need.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from comfy_runtime.settings import Settings
from comfy_runtime.supply.comfyui_source import resolve_comfyui_path
from comfy_runtime.supply.lockfile import load_lock
from comfy_runtime.supply.patches import PatchPin, PatchState, apply_all, state_of


def patched_files(pin: PatchPin) -> list[str]:
    return re.findall(r"(?m)^\+\+\+ b/(\S+)$", pin.path.read_text())


def _revert(pin: PatchPin, tree: Path) -> None:
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tree.resolve().parent)}
    subprocess.run(["git", "apply", "--reverse", str(pin.path)], cwd=tree, check=True, env=env)


def pristine_copy(target: Path, files_only: bool = True) -> Path:
    """The provisioned ComfyUI (only the patched files when files_only) in target, with every lock patch undone."""
    source = resolve_comfyui_path(Settings())
    pins = load_lock().comfyui.patches
    if files_only:
        for pin in pins:
            for name in patched_files(pin):
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / name, target / name)
    else:
        shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for pin in reversed(pins):
        if state_of(pin, target) is PatchState.APPLIED:
            _revert(pin, target)
    return target


def patched_copy(target: Path) -> Path:
    """A whole copy of the provisioned ComfyUI with every lock patch applied (HV_COMFYUI_PATH for a subprocess)."""
    source = resolve_comfyui_path(Settings())
    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    apply_all(load_lock().comfyui.patches, target)
    return target
